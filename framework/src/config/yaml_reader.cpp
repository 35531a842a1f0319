#include "config/yaml_reader.hpp"

#include <shrink/core/error.hpp>

#include "config/yaml_messages.hpp"

#include <yaml-cpp/eventhandler.h>

#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace shrink::detail {

namespace {

// Finds a key given twice in one mapping from the parser's events, so that aliases are not
// expanded (a billion-laughs document costs its own size, not its expansion).
class DuplicateKeys : public YAML::EventHandler {
 public:
  explicit DuplicateKeys(std::string file) : file_(std::move(file)) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { item(mark, nullptr); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { item(mark, nullptr); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string& value) override {
    item(mark, &value);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    item(mark, nullptr);
    stack_.push_back({false});
  }
  void OnSequenceEnd() override { stack_.pop_back(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    item(mark, nullptr);
    stack_.push_back({true});
  }
  void OnMapEnd() override { stack_.pop_back(); }

 private:
  struct Frame {
    bool map = false;
    bool value_next = false;  // in a map: the next item is a value, not a key
    std::map<std::string, YAML::Mark> keys;
  };

  std::string at(const YAML::Mark& m) const {
    return std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  }

  // One item (scalar, null, alias or the start of a collection) in the current collection.
  void item(const YAML::Mark& mark, const std::string* scalar) {
    if (stack_.empty() || !stack_.back().map) return;
    Frame& f = stack_.back();
    const bool key = !f.value_next;
    f.value_next = !f.value_next;
    if (!key || scalar == nullptr) return;
    const auto [it, fresh] = f.keys.emplace(*scalar, mark);
    SHRINK_CHECK(fresh, file_ << ":" << at(mark) << ": " << *scalar << ": given twice (first at "
                              << at(it->second) << ")");
  }

  std::string file_;
  std::vector<Frame> stack_;
};

void check_duplicate_keys(std::istream& in, const std::string& name) {
  DuplicateKeys handler(name);
  YAML::Parser parser(in);
  while (parser.HandleNextDocument(handler)) {
  }
}

}  // namespace

YAML::Node load_yaml_text(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
    std::istringstream in(text);
    check_duplicate_keys(in, name);
  } catch (const YAML::Exception& e) {
    throw Error(yaml_parse_error(name, e));
  }
  return root;
}

YAML::Node load_yaml_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SHRINK_CHECK(in.good(), path << ": cannot open the file");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0);
  // An experiment or config_list is a few kilobytes; a file of many megabytes is a mistake.
  constexpr std::streamoff kMaxBytes = 16 << 20;
  SHRINK_CHECK(size <= kMaxBytes, path << ": " << size
                                       << " bytes; a YAML experiment or "
                                          "config_list is at most 16 MiB");
  std::ostringstream text;
  text << in.rdbuf();
  return load_yaml_text(text.str(), path);
}

}  // namespace shrink::detail
