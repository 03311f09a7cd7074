#include <catch2/catch.hpp>

#include "actors/cluster/cluster_actor.hpp"
#include "actors/cluster/cluster_directory.hpp"

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
