#pragma once

// One thread driving libcurl transfers through one multi handle: the channel
// client's exchanges and the webhook sender's deliveries. Jobs are handed in
// from any thread and start on the loop's thread while a slot is free; easy
// handles are reused, so their keep-alive connections stay in the multi
// handle's pool; each finished transfer is reported on the loop's thread.
// At most `max_waiting` jobs wait for a slot: one more is reported unstarted
// at once, on the submitting thread (the callers' own limits keep far below
// it; this is the backstop that keeps the queue bounded whatever they do).
// Stopping abandons what is in flight and what waits: nothing is reported.

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <curl/curl.h>

#include "common/thread_name.hpp"

namespace paybus {

template <class Job>
class transfer_loop {
public:
  struct hooks {
    /// A new handle with the options every transfer of the loop shares
    /// (nullptr if none can be made).
    std::function<CURL*()> make_handle;
    /// Sets `job`'s own options on `easy`; false if it cannot be sent.
    std::function<bool(CURL* easy, Job& job)> prepare;
    /// `job` is over, with libcurl's `code`. `easy` may be read until the
    /// call returns; nullptr if the job never started (no handle could be
    /// made, or `prepare` refused it).
    std::function<void(std::unique_ptr<Job> job, CURL* easy, CURLcode code)> finished;
  };

  static constexpr size_t default_max_waiting = 4096;

  /// At most `slots` transfers at a time; the rest wait, in order, at most
  /// `max_waiting` of them.
  transfer_loop(std::string thread_name, size_t slots, hooks h,
                size_t max_waiting = default_max_waiting)
    : thread_name_(std::move(thread_name)),
      slots_(std::max<size_t>(1, slots)),
      max_waiting_(std::max<size_t>(1, max_waiting)),
      hooks_(std::move(h)),
      multi_(curl_multi_init()) {
  }

  ~transfer_loop() {
    stop();
    waiting_.clear();
    curl_multi_cleanup(multi_);
  }

  transfer_loop(const transfer_loop&) = delete;
  transfer_loop& operator=(const transfer_loop&) = delete;

  /// For options set before start().
  CURLM* multi() const {
    return multi_;
  }

  void start() {
    thread_ = std::thread{[this] { run(); }};
  }

  /// Queues `job`; false (and `job` dropped) once the loop is stopping. With
  /// `max_waiting` jobs waiting already, `job` is reported unstarted
  /// (`finished` with no handle) here, before this returns true.
  bool submit(std::unique_ptr<Job> job) {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (stopping_)
        return false;
      if (waiting_.size() < max_waiting_) {
        waiting_.push_back(std::move(job));
        job = nullptr;
      }
    }
    if (job != nullptr) {
      hooks_.finished(std::move(job), nullptr, CURLE_FAILED_INIT);
      return true;
    }
    curl_multi_wakeup(multi_);
    return true;
  }

  /// Ends the thread (idempotent).
  void stop() {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      stopping_ = true;
    }
    curl_multi_wakeup(multi_);
    if (thread_.joinable())
      thread_.join();
  }

private:
  void run() {
    name_this_thread(thread_name_);
    std::vector<CURL*> idle;
    std::unordered_map<CURL*, std::unique_ptr<Job>> busy;
    std::vector<std::unique_ptr<Job>> starting;
    while (true) {
      {
        std::lock_guard<std::mutex> guard{mutex_};
        if (stopping_)
          break;
        while (busy.size() + starting.size() < slots_ && !waiting_.empty()) {
          starting.push_back(std::move(waiting_.front()));
          waiting_.pop_front();
        }
      }
      for (auto& job : starting) {
        CURL* easy = nullptr;
        if (!idle.empty()) {
          easy = idle.back();
          idle.pop_back();
        } else {
          easy = hooks_.make_handle();
        }
        if (easy == nullptr || !hooks_.prepare(easy, *job)) {
          if (easy != nullptr)
            idle.push_back(easy);
          hooks_.finished(std::move(job), nullptr, CURLE_FAILED_INIT);
          continue;
        }
        curl_multi_add_handle(multi_, easy);
        busy.emplace(easy, std::move(job));
      }
      starting.clear();
      int running = 0;
      curl_multi_perform(multi_, &running);
      int left = 0;
      while (CURLMsg* message = curl_multi_info_read(multi_, &left)) {
        if (message->msg != CURLMSG_DONE)
          continue;
        CURL* easy = message->easy_handle;
        CURLcode code = message->data.result;
        curl_multi_remove_handle(multi_, easy);
        auto found = busy.find(easy);
        if (found == busy.end())
          continue;  // not one of ours (cannot happen)
        auto job = std::move(found->second);
        busy.erase(found);
        hooks_.finished(std::move(job), easy, code);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);  // the job's list went with it
        idle.push_back(easy);
      }
      // Jobs waiting while a slot is free start at once; with nothing to
      // start, sleep until a socket, a timeout or a new job.
      bool startable = false;
      {
        std::lock_guard<std::mutex> guard{mutex_};
        startable = !waiting_.empty() && busy.size() < slots_;
      }
      if (!startable)
        curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
    for (auto& [easy, job] : busy) {
      curl_multi_remove_handle(multi_, easy);
      curl_easy_cleanup(easy);
    }
    busy.clear();
    for (CURL* easy : idle)
      curl_easy_cleanup(easy);
  }

  const std::string thread_name_;
  const size_t slots_;
  const size_t max_waiting_;
  const hooks hooks_;
  CURLM* const multi_;
  std::mutex mutex_;
  std::deque<std::unique_ptr<Job>> waiting_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace paybus
