#include <catch2/catch.hpp>

#include "actors/cluster/cluster_actor.hpp"
#include "actors/cluster/cluster_directory.hpp"
#include "actors/cluster/slot_table.hpp"

#include <set>

using namespace paybus;

TEST_CASE("the directory serves its own number and no peer's until one is up") {
  cluster_directory directory{7};
  CHECK(directory.self() == 7);
  CHECK(directory.serves(7));
  CHECK_FALSE(directory.serves(8));
  CHECK_FALSE(directory.owner(8));  // unknown: no handle, owner_unavailable
  CHECK(directory.members().empty());
  directory.peer_up(8, "127.0.0.1:9102", cluster_actor{});
  directory.peer_down(8);
  directory.peer_down(9);  // never seen: nothing to do
  auto members = directory.members();
  REQUIRE(members.size() == 1);
  CHECK(members[0].instance == 8);
  CHECK(members[0].address == "127.0.0.1:9102");
  CHECK_FALSE(members[0].up);
  CHECK_FALSE(directory.owner(8));
}

TEST_CASE("registry lines: an instance number and a HOST:PORT, nothing else") {
  int32_t instance = 0;
  std::string address;
  REQUIRE(parse_member_line("7 127.0.0.1:9101", instance, address));
  CHECK(instance == 7);
  CHECK(address == "127.0.0.1:9101");
  REQUIRE(parse_member_line("12 [::1]:9101", instance, address));
  CHECK(address == "[::1]:9101");
  for (const auto* bad : {"", "7", "7 ", "x 127.0.0.1:9101", "0 127.0.0.1:9101",
                          "123456 127.0.0.1:9101", "7 127.0.0.1", "7 127.0.0.1:0",
                          "7 127.0.0.1:65536", "7 127.0.0.1:91a", " 7 127.0.0.1:9101"}) {
    INFO(bad);
    CHECK_FALSE(parse_member_line(bad, instance, address));
  }
}

TEST_CASE("slots: fixed hashing, a whole table or none, higher epochs win") {
  // FNV-1a of "demo\0A-1": fixed forever, every instance and version agrees.
  CHECK(slot_of("demo", "A-1") == slot_of("demo", "A-1"));
  CHECK(slot_of("demo", "A-1") >= 0);
  CHECK(slot_of("demo", "A-1") < slot_count);
  CHECK(slot_of("demo", "") == static_cast<int32_t>(0x596e2675efe987e2ull % slot_count));
  std::set<int32_t> spread;
  for (int i = 0; i < 1000; ++i)
    spread.insert(slot_of("demo", "order-" + std::to_string(i)));
  CHECK(spread.size() > 800);  // 1,000 keys over 4,096 slots seldom share one

  slot_table table;
  table.epoch = 3;
  for (int32_t slot = 0; slot < slot_count; ++slot)
    table.owners.push_back(slot < 1000 ? 1 : slot < 3000 ? 2 : 1);
  std::string error;
  auto back = decode_slots(encode_slots(table), error);
  REQUIRE(back);
  CHECK(back->epoch == 3);
  CHECK(back->owners == table.owners);
  CHECK(back->counts() == std::map<int32_t, int32_t>{{1, 2096}, {2, 2000}});
  for (const auto* bad :
       {"", "{}", "{\"epoch\":1,\"owners\":[[1,0,4094]]}",
        "{\"epoch\":1,\"owners\":[[1,0,4095],[2,7,7]]}", "{\"epoch\":1,\"owners\":[[0,0,4095]]}",
        "{\"epoch\":1,\"owners\":[[1,0,4096]]}"}) {
    INFO(bad);
    CHECK_FALSE(decode_slots(bad, error));
  }

  std::vector<std::string> rows;
  for (int32_t slot = 0; slot < slot_count; ++slot)
    rows.push_back(std::to_string(slot) + " " + (slot % 2 ? "5" : "6") + " "
                   + (slot == 9 ? "4" : "2"));
  auto read = slots_from_rows(rows, error);
  REQUIRE(read);
  CHECK(read->epoch == 4);
  CHECK(read->owner(9) == 5);
  rows.pop_back();
  CHECK_FALSE(slots_from_rows(rows, error));
  CHECK(error == "paybus_slots has no row for slot 4095");

  shared_slots shared;
  CHECK(shared.version() == 0);
  CHECK_FALSE(shared.confirmed());  // until the database or a peer says the table is current
  CHECK_FALSE(shared.offer(slot_table{}));  // not whole
  CHECK(shared.offer(table));
  CHECK(shared.version() == 1);
  auto older = table;
  older.epoch = 2;
  older.owners.assign(slot_count, 9);
  CHECK_FALSE(shared.offer(older));  // an instance behind never takes slots back
  CHECK_FALSE(shared.offer(table));  // the same epoch: nothing new
  auto newer = older;
  newer.epoch = 4;
  CHECK(shared.offer(newer));
  CHECK(shared.get().owner(0) == 9);
  CHECK(shared.version() == 2);
}

TEST_CASE("adopted stores: the list kept in the local store reads back, damage is refused") {
  auto text = encode_adopted({{7, "/var/lib/seven"}, {9, "/mnt/nine/store"}});
  auto back = decode_adopted(text);
  REQUIRE(back);
  CHECK(
    *back
    == std::vector<std::pair<int32_t, std::string>>{{7, "/var/lib/seven"}, {9, "/mnt/nine/store"}});
  CHECK(decode_adopted("[]")->empty());
  for (const auto* bad :
       {"", "{}", "[{\"instance_id\":7}]", "[{\"instance_id\":\"7\",\"store_dir\":\"x\"}]"}) {
    INFO(bad);
    CHECK_FALSE(decode_adopted(bad));
  }
  cluster_directory directory{3};
  CHECK_FALSE(directory.serves(7));
  directory.adopt(adopted_store{7, "/var/lib/seven", reader_actor{}, store_actor{}, nullptr});
  CHECK(directory.serves(7));
  CHECK(directory.adopted(7)->store_dir == "/var/lib/seven");
  CHECK_FALSE(directory.adopted(8));
  CHECK(directory.adopted_all().size() == 1);
}
