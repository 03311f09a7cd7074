// Logs the admin consoles and cluster peers that the TLS handshake refused.
//
// CAF 0.17's OpenSSL module accepts connections with SSL_accept and drops
// one that fails without a word (its own logging is compiled out of
// Debian's build), so an operator would never learn that a console with a
// certificate from another CA, or none, knocked. paybusd defines SSL_accept
// itself (exported: programs/CMakeLists.txt) and hands each call to
// OpenSSL's; a handshake that fails for good is logged with the peer's
// address and OpenSSL's reason. Nothing else changes: the result, the error
// queue and the connection are CAF's as before.

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <string>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

namespace {

std::string peer_of(int fd) {
  sockaddr_storage address{};
  socklen_t size = sizeof(address);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0)
    return "an unknown peer";
  char text[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (address.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    port = ntohs(in->sin_port);
  } else if (address.ss_family == AF_INET6) {
    auto* in = reinterpret_cast<sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in->sin6_addr, text, sizeof(text));
    port = ntohs(in->sin6_port);
  }
  return std::string{text} + ":" + std::to_string(port);
}

std::atomic<uint16_t> cluster_port{0};

uint16_t local_port_of(int fd) {
  sockaddr_storage address{};
  socklen_t size = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0)
    return 0;
  if (address.ss_family == AF_INET)
    return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  if (address.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  return 0;
}

}  // namespace

namespace paybus {

/// Handshakes refused on this port are a cluster peer's, not a console's.
void note_cluster_tls_port(uint16_t port) {
  cluster_port.store(port);
}

}  // namespace paybus

extern "C" int SSL_accept(SSL* ssl) {
  using accept_function = int (*)(SSL*);
  static auto real = reinterpret_cast<accept_function>(dlsym(RTLD_NEXT, "SSL_accept"));
  if (real == nullptr)
    return -1;
  int result = real(ssl);
  if (result == 1)
    return result;
  int error = SSL_get_error(ssl, result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE)
    return result;
  std::string reason;
  if (auto verify = SSL_get_verify_result(ssl); verify != X509_V_OK)
    reason = X509_verify_cert_error_string(verify);
  if (auto queued = ERR_peek_error(); queued != 0) {
    char text[256];
    ERR_error_string_n(queued, text, sizeof(text));
    reason += (reason.empty() ? "" : "; ") + std::string{text};
  }
  auto port = cluster_port.load();
  bool peer = port != 0 && local_port_of(SSL_get_fd(ssl)) == port;
  spdlog::warn("{} refused: TLS handshake with {} failed ({})",
               peer ? "cluster peer" : "admin console", peer_of(SSL_get_fd(ssl)),
               reason.empty() ? "the connection closed" : reason);
  // OpenSSL's error queue is the thread's, and CAF's multiplexer thread
  // reads every other connection next: a reason left queued here makes its
  // next SSL_read on a sound connection look failed, and CAF closes that
  // one too (a refused stranger would cut the links between peers). The
  // refusal is decided already; its reasons are logged above.
  ERR_clear_error();
  return result;
}

// The same for handshakes this process starts (to a peer whose certificate
// is not from the CA, say): the reason must not stay queued on the thread
// for the next read of a sound connection. CAF says the connect failed.
extern "C" int SSL_connect(SSL* ssl) {
  using connect_function = int (*)(SSL*);
  static auto real = reinterpret_cast<connect_function>(dlsym(RTLD_NEXT, "SSL_connect"));
  if (real == nullptr)
    return -1;
  int result = real(ssl);
  // Only CAF's connections present a certificate of their own (the peers'
  // mutual TLS); libcurl's to channels read the queue for their messages.
  if (result == 1 || SSL_get_certificate(ssl) == nullptr)
    return result;
  int error = SSL_get_error(ssl, result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE)
    return result;
  std::string reason;
  if (auto queued = ERR_peek_error(); queued != 0) {
    char text[256];
    ERR_error_string_n(queued, text, sizeof(text));
    reason = text;
  }
  spdlog::debug("TLS handshake to {} failed ({})", peer_of(SSL_get_fd(ssl)),
                reason.empty() ? "the connection closed" : reason);
  ERR_clear_error();
  return result;
}

namespace {

/// After a read or write that failed for good on one of CAF's connections
/// (one that presents a certificate: the peers' and the consoles'), leaves
/// no reason queued on the thread for the next connection it serves.
int clear_after_failure(SSL* ssl, int result) {
  if (result > 0 || SSL_get_certificate(ssl) == nullptr)
    return result;
  int error = SSL_get_error(ssl, result);
  if (error == SSL_ERROR_SSL)
    ERR_clear_error();
  return result;
}

}  // namespace

extern "C" int SSL_read(SSL* ssl, void* buffer, int size) {
  using read_function = int (*)(SSL*, void*, int);
  static auto real = reinterpret_cast<read_function>(dlsym(RTLD_NEXT, "SSL_read"));
  return real == nullptr ? -1 : clear_after_failure(ssl, real(ssl, buffer, size));
}

extern "C" int SSL_write(SSL* ssl, const void* buffer, int size) {
  using write_function = int (*)(SSL*, const void*, int);
  static auto real = reinterpret_cast<write_function>(dlsym(RTLD_NEXT, "SSL_write"));
  return real == nullptr ? -1 : clear_after_failure(ssl, real(ssl, buffer, size));
}
