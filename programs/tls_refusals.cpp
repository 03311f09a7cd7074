// Logs the admin consoles that the TLS handshake refused.
//
// CAF 0.17's OpenSSL module accepts connections with SSL_accept and drops
// one that fails without a word (its own logging is compiled out of
// Debian's build), so an operator would never learn that a console with a
// certificate from another CA, or none, knocked. paybusd defines SSL_accept
// itself (exported: programs/CMakeLists.txt) and hands each call to
// OpenSSL's; a handshake that fails for good is logged with the peer's
// address and OpenSSL's reason. Nothing else changes: the result, the error
// queue and the connection are CAF's as before.

#include <dlfcn.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>

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

} // namespace

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
  spdlog::warn("admin console refused: TLS handshake with {} failed ({})",
               peer_of(SSL_get_fd(ssl)), reason.empty() ? "the connection closed" : reason);
  return result;
}
