# Every dependency is a Debian bookworm package (scripts/bootstrap installs them).
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(RocksDB REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
find_package(PostgreSQL REQUIRED)

# CAF 0.17.6 ships no CMake package in Debian.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
add_library(caf INTERFACE)
target_include_directories(caf SYSTEM INTERFACE ${CAF_INCLUDE_DIR})
target_link_libraries(caf INTERFACE ${CAF_IO_LIBRARY} ${CAF_CORE_LIBRARY} Threads::Threads)
# The admin console's mutual TLS (caf::openssl::publish / remote_actor).
find_library(CAF_OPENSSL_LIBRARY caf_openssl REQUIRED)
add_library(caf_openssl INTERFACE)
target_link_libraries(caf_openssl INTERFACE ${CAF_OPENSSL_LIBRARY} caf OpenSSL::SSL)

find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h REQUIRED)
find_library(HTTP_PARSER_LIBRARY http_parser REQUIRED)
add_library(http_parser INTERFACE)
target_include_directories(http_parser SYSTEM INTERFACE ${HTTP_PARSER_INCLUDE_DIR})
target_link_libraries(http_parser INTERFACE ${HTTP_PARSER_LIBRARY})
find_package(CURL REQUIRED)
