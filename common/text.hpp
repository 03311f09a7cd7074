#pragma once

// Checks of text that came from outside (a client, a channel) before the bus
// keeps it: what is stored is later sent to PostgreSQL, shown by the API and
// put in webhooks.

#include <string_view>

namespace paybus {

/// No control characters (C0 or DEL). Text read by nlohmann::json's parser
/// is valid UTF-8 already, but a JSON escape can still carry NUL, which
/// PostgreSQL refuses in text: a row with one would stop the database feed
/// (docs/architecture.md).
inline bool printable_text(std::string_view text) {
  for (unsigned char c : text)
    if (c < 0x20 || c == 0x7f)
      return false;
  return true;
}

/// A channel's transaction id as the bus keeps it (API.md section 4): at
/// most 128 bytes of printable text, or none. Never cut to fit: a cut id
/// would name another transaction, or end inside a UTF-8 character.
inline bool valid_channel_txn_id(std::string_view text) {
  return text.size() <= 128 && printable_text(text);
}

}  // namespace paybus
