#include "tools/admin_render.hpp"

#include <algorithm>
#include <vector>

namespace paybus {

namespace {

using json = nlohmann::ordered_json;

std::string scalar(const json& value) {
  if (value.is_string())
    return value.get<std::string>();
  if (value.is_null())
    return "-";
  return value.dump();
}

/// Rows of objects as a table: one column a key, in the first row's order.
std::string table(const json& rows) {
  if (rows.empty())
    return "(none)\n";
  std::vector<std::string> columns;
  for (const auto& [key, value] : rows.front().items())
    columns.push_back(key);
  std::vector<std::vector<std::string>> cells;
  cells.push_back(columns);
  for (const auto& row : rows) {
    std::vector<std::string> line;
    for (const auto& column : columns)
      line.push_back(row.contains(column) ? scalar(row[column]) : "");
    cells.push_back(std::move(line));
  }
  std::vector<size_t> widths(columns.size(), 0);
  for (const auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i)
      widths[i] = std::max(widths[i], line[i].size());
  std::string out;
  for (const auto& line : cells) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      text += line[i];
      if (i + 1 < line.size())
        text += std::string(widths[i] - line[i].size() + 2, ' ');
    }
    out += text + "\n";
  }
  return out;
}

/// An object as aligned "name: value" lines, nested objects as "a.b".
void flatten(const json& value, const std::string& prefix,
             std::vector<std::pair<std::string, std::string>>& lines) {
  if (value.is_object() && !value.empty()) {
    for (const auto& [key, inner] : value.items())
      flatten(inner, prefix.empty() ? key : prefix + "." + key, lines);
    return;
  }
  if (value.is_array()) {
    if (value.empty()) {
      lines.emplace_back(prefix, "-");
      return;
    }
    bool plain = std::all_of(value.begin(), value.end(),
                             [](const json& item) { return !item.is_structured(); });
    if (plain) {
      std::string joined;
      for (const auto& item : value)
        joined += (joined.empty() ? "" : ", ") + scalar(item);
      lines.emplace_back(prefix, joined);
      return;
    }
    for (size_t i = 0; i < value.size(); ++i)
      flatten(value[i], prefix + "." + std::to_string(i), lines);
    return;
  }
  lines.emplace_back(prefix, value.is_object() ? "-" : scalar(value));
}

std::string fields(const json& value) {
  std::vector<std::pair<std::string, std::string>> lines;
  flatten(value, "", lines);
  size_t width = 0;
  for (const auto& [name, text] : lines)
    width = std::max(width, name.size());
  std::string out;
  for (const auto& [name, text] : lines)
    out += name + ":" + std::string(width - name.size() + 1, ' ') + text + "\n";
  return out;
}

}  // namespace

std::string render_admin_answer(const std::string& verb, const json& document) {
  if (verb == "help" && document.contains("commands")) {
    std::string out;
    for (const auto& line : document["commands"])
      out += scalar(line) + "\n";
    return out;
  }
  if (verb == "channels" && document.contains("channels"))
    return table(document["channels"]);
  if (verb == "channel")
    return table(json::array({document}));
  if (verb == "audit" && document.contains("entries"))
    return table(document["entries"]);
  if (verb == "degrade" && document.contains("switches")) {
    json rows = json::array();
    for (const auto& [name, paused] : document["switches"].items())
      rows.push_back({{"switch", name}, {"paused", paused}});
    return table(rows);
  }
  return fields(document);
}

}  // namespace paybus
