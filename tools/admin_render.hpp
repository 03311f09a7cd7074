#pragma once

// How paybus-admin shows an answer to people: the JSON document of API.md
// section 8 as aligned tables and "name: value" lines. Pure (unit-tested).

#include <string>

#include <nlohmann/json.hpp>

namespace paybus {

/// The text for `document`, the answer to a command whose first word is `verb`.
std::string render_admin_answer(const std::string& verb, const nlohmann::ordered_json& document);

}  // namespace paybus
