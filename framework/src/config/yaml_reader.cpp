#include "config/yaml_reader.hpp"

#include <shrink/core/error.hpp>

#include "config/yaml_messages.hpp"

#include <yaml-cpp/eventhandler.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <vector>

namespace shrink::detail {

namespace {

// What yaml-cpp accepts and Shrink's readers must not see, found from the parser's events
// (aliases are not expanded here, so a billion-laughs document costs its own size):
//  - a key given twice in one mapping (yaml-cpp keeps both; a lookup sees the first);
//  - a key that is not a plain value (a list or mapping as a key);
//  - a document whose aliases expand it past kMaxNodes nodes (the readers do expand them).
class DocumentChecks : public YAML::EventHandler {
 public:
  static constexpr int64_t kMaxNodes = 1000000;

  explicit DocumentChecks(std::string file) : file_(std::move(file)) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    item(mark, nullptr, false);
    count(anchor, 1);
    add(mark, 1);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    item(mark, nullptr, false);
    const auto it = sizes_.find(anchor);
    add(mark, it == sizes_.end() ? 1 : it->second);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string& value) override {
    item(mark, &value, false);
    count(anchor, 1);
    add(mark, 1);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    item(mark, nullptr, true);
    open(mark, false, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    item(mark, nullptr, true);
    open(mark, true, anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    bool map = false;
    bool value_next = false;  // in a map: the next item is a value, not a key
    YAML::anchor_t anchor = 0;
    int64_t nodes_before = 0;  // the expanded count when it opened
    std::map<std::string, YAML::Mark> keys;
  };

  std::string at(const YAML::Mark& m) const {
    return std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  }

  // One item (scalar, null, alias or the start of a collection) in the current collection.
  void item(const YAML::Mark& mark, const std::string* scalar, bool collection) {
    if (stack_.empty() || !stack_.back().map) return;
    Frame& f = stack_.back();
    const bool key = !f.value_next;
    f.value_next = !f.value_next;
    if (!key) return;
    SHRINK_CHECK(!collection, file_ << ":" << at(mark)
                                    << ": a key must be a plain value, not a list or mapping");
    if (scalar == nullptr) return;
    const auto [it, fresh] = f.keys.emplace(*scalar, mark);
    std::string shown = *scalar;
    for (char& ch : shown) ch = ch == '\n' ? ' ' : ch;  // the message stays one line
    SHRINK_CHECK(fresh, file_ << ":" << at(mark) << ": " << shown << ": given twice (first at "
                              << at(it->second) << ")");
  }
  void open(const YAML::Mark& mark, bool map, YAML::anchor_t anchor) {
    add(mark, 1);
    stack_.push_back({map, false, anchor, nodes_ - 1, {}});
  }
  void close() {
    if (stack_.back().anchor != 0)
      sizes_[stack_.back().anchor] = nodes_ - stack_.back().nodes_before;
    stack_.pop_back();
  }
  void count(YAML::anchor_t anchor, int64_t n) {
    if (anchor != 0) sizes_[anchor] = n;
  }
  void add(const YAML::Mark& mark, int64_t n) {
    nodes_ += n;
    SHRINK_CHECK(nodes_ <= kMaxNodes, file_ << ":" << at(mark)
                                            << ": the document expands to more than " << kMaxNodes
                                            << " values through its aliases");
  }

  std::string file_;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, int64_t> sizes_;
  int64_t nodes_ = 0;
};

void check_document(std::istream& in, const std::string& name) {
  DocumentChecks handler(name);
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
    check_document(in, name);
  } catch (const YAML::Exception& e) {
    throw Error(yaml_parse_error(name, e));
  }
  return root;
}

YAML::Node load_yaml_file(const std::string& path) {
  std::error_code ec;
  SHRINK_CHECK(!std::filesystem::is_directory(path, ec),
               path << ": a folder, expected a YAML file");
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
