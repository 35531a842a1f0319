#include "data/folder_source.hpp"

#include "data/image_codec.hpp"
#include "data/name_table.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

namespace fs = std::filesystem;

namespace shrink::detail {
namespace {

const std::vector<std::string> kRead = {".jpg", ".jpeg", ".png"};
// What torchvision's ImageFolder would also take: refused by name rather than skipped unsaid.
const std::vector<std::string> kOtherImages = {".bmp", ".gif",  ".pgm", ".ppm",
                                               ".tif", ".tiff", ".webp"};

std::string lower_extension(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// The images of a split: their paths (front-coded, NameTable) and labels, a few bytes per image
// (Fashion-MNIST's 700 000-image folder: docs/results.md). Class folders keep where each class
// starts; a list file keeps a label per line.
class FolderSource : public Source {
 public:
  FolderSource(std::string root, std::vector<std::string> classes, std::vector<int64_t> floor)
      : root_(std::move(root)), classes_(std::move(classes)), floor_(std::move(floor)) {}
  void add(const std::string& relative, int64_t label) {
    try {
      names_.add(relative);
    } catch (const std::length_error&) {
      throw Error(root_ + "/" + relative.substr(0, 64) + "...: a path of " +
                  std::to_string(relative.size()) + " bytes (at most 4096)");
    }
    if (classes_.empty()) {
      labels_.push_back(static_cast<int32_t>(label));
    } else if (static_cast<int64_t>(class_starts_.size()) <= label) {
      class_starts_.push_back(names_.size() - 1);  // class folders come in label order
    }
  }
  void finish(int channels) {
    channels_ = channels;
    labels_.shrink_to_fit();
  }

  int64_t size() const override { return names_.size(); }
  Sample get(int64_t i) const override {
    return {decode_image(name(i), channels_, floor_), label(i)};
  }
  std::string name(int64_t i) const override {
    std::string stored = names_.get(i);
    return stored[0] == '/' ? stored : root_ + "/" + stored;  // a list file's absolute paths
  }
  at::Tensor labels() const override {
    if (!labels_.empty()) return at::tensor(labels_, at::kInt);
    at::Tensor out = at::empty({size()}, at::kInt);
    for (std::size_t c = 0; c < class_starts_.size(); ++c) {
      const int64_t end = c + 1 < class_starts_.size() ? class_starts_[c + 1] : size();
      out.narrow(0, class_starts_[c], end - class_starts_[c]).fill_(static_cast<int32_t>(c));
    }
    return out;
  }
  std::vector<std::string> classes() const override { return classes_; }
  bool decodes() const override { return true; }

 private:
  int64_t label(int64_t i) const {
    if (!labels_.empty()) return labels_[static_cast<std::size_t>(i)];
    return std::upper_bound(class_starts_.begin(), class_starts_.end(), i) - class_starts_.begin() -
           1;
  }

  std::string root_;
  std::vector<std::string> classes_;
  std::vector<int64_t> floor_;
  NameTable names_;                    // every image's path below root_
  std::vector<int64_t> class_starts_;  // class folders: the first image of each class
  std::vector<int32_t> labels_;        // a list file: each image's label
  int channels_ = 3;
};

// Colour when any of up to 8 images spread over the set is colour (a gray folder stays one
// channel; a colour folder with some gray images is read as RGB, as ImageFolder's loader does).
int folder_channels(const FolderSource& s) {
  const int64_t n = s.size(), probes = std::min<int64_t>(n, 8);
  for (int64_t k = 0; k < probes; ++k) {
    try {
      if (stored_channels(s.name(k * n / probes)) == 3) return 3;
    } catch (const BadSample&) {
      // A bad image says so when it is read, as on_bad_sample decides.
    }
  }
  return 1;
}

// The images below one class folder, sorted as os.walk and sorted() order them.
// Each image as "<folder below root>\0<file>" in one string: sorting those is sorting (folder,
// file) pairs (NUL sorts first), at a few bytes per name beyond the name itself.
void add_class_images(const fs::path& root, const std::string& name, int64_t label,
                      FolderSource& source) {
  std::string found;
  std::vector<uint32_t> starts;
  std::error_code ec;
  const fs::path folder = root / name;
  for (fs::recursive_directory_iterator
           it(folder, fs::directory_options::follow_directory_symlink, ec),
       end;
       it != end; it.increment(ec)) {
    SHRINK_CHECK(!ec, folder.string() << ": cannot be listed (" << ec.message() << ")");
    if (!it->is_regular_file(ec)) continue;
    const std::string extension = lower_extension(it->path());
    SHRINK_CHECK(!contains(kOtherImages, extension),
                 it->path().string() << ": a " << extension
                                     << " image; Shrink reads JPEG and PNG (.jpg, .jpeg, .png)");
    if (!contains(kRead, extension)) continue;  // not an image (a README, .DS_Store)
    const fs::path relative = it->path().lexically_relative(root);
    starts.push_back(static_cast<uint32_t>(found.size()));
    found += relative.parent_path().string() + '\0' + relative.filename().string() + '\0';
  }
  SHRINK_CHECK(!ec, folder.string() << ": cannot be listed (" << ec.message() << ")");
  SHRINK_CHECK(!starts.empty(), root.string() << "/" << name
                                              << ": an empty class folder (no .jpg, .jpeg or "
                                                 ".png image in it)");
  const auto entry = [&found](uint32_t start) {
    return std::string_view(found.data() + start,
                            found.find('\0', found.find('\0', start) + 1) - start);
  };
  std::sort(starts.begin(), starts.end(),
            [&](uint32_t a, uint32_t b) { return entry(a) < entry(b); });
  for (uint32_t start : starts) {
    std::string path(entry(start));
    path[path.find('\0')] = '/';
    source.add(path, label);
  }
}

std::unique_ptr<FolderSource> read_class_folders(const std::string& root,
                                                 const std::vector<int64_t>& floor) {
  std::vector<std::string> classes;
  std::error_code ec;
  bool loose_images = false;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.is_directory(ec)) classes.push_back(entry.path().filename().string());
    if (entry.is_regular_file(ec) && contains(kRead, lower_extension(entry.path()))) {
      loose_images = true;
    }
  }
  SHRINK_CHECK(!ec, root << ": cannot be listed (" << ec.message() << ")");
  SHRINK_CHECK(!classes.empty(),
               root << ": no class folders (expected " << root << "/<class>/<image>"
                    << (loose_images ? "; the images lie in the folder itself" : "")
                    << ", or data.list for a list file)");
  std::sort(classes.begin(), classes.end());
  auto source = std::make_unique<FolderSource>(root, classes, floor);
  for (std::size_t c = 0; c < classes.size(); ++c) {
    add_class_images(root, classes[c], static_cast<int64_t>(c), *source);
  }
  return source;
}

// `path label` per line (the path may hold spaces: the label is the last field); blank lines and
// lines starting with # are skipped. Paths are relative to the list file's folder.
std::unique_ptr<FolderSource> read_list_file(const std::string& list,
                                             const std::vector<int64_t>& floor) {
  std::ifstream in(list);
  SHRINK_CHECK(in, list << ": cannot be read");
  const fs::path root =
      fs::path(list).parent_path().empty() ? fs::path(".") : fs::path(list).parent_path();
  auto source = std::make_unique<FolderSource>(root.string(), std::vector<std::string>{}, floor);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string where = list + ":" + std::to_string(number);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const std::size_t space = line.find_last_of(" \t");
    SHRINK_CHECK(space != std::string::npos,
                 where << ": expected `path label`, got '" << line << "'");
    std::string path = line.substr(0, space);
    while (!path.empty() && std::isspace(static_cast<unsigned char>(path.back()))) path.pop_back();
    const std::string label_text = line.substr(space + 1);
    std::size_t used = 0;
    int64_t label = -1;
    try {
      label = std::stoll(label_text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SHRINK_CHECK(used == label_text.size() && label >= 0 && label < (int64_t{1} << 31),
                 where << ": label '" << label_text << "': expected a class index >= 0");
    std::error_code ec;
    const fs::path file = fs::path(path).is_absolute() ? fs::path(path) : root / path;
    SHRINK_CHECK(fs::is_regular_file(file, ec), where << ": " << file.string() << ": no such file");
    source->add(path, label);
  }
  SHRINK_CHECK(source->size() > 0, list << ": no images listed");
  return source;
}

}  // namespace

std::unique_ptr<Source> open_folder(const DataOptions& o, bool train,
                                    const std::vector<int64_t>& decode_floor) {
  const std::string& list = train ? o.list : o.test_list;
  const std::vector<int64_t> floor = o.scaled_decode ? decode_floor : std::vector<int64_t>{};
  std::unique_ptr<FolderSource> source =
      list.empty() ? read_class_folders(train ? o.path : o.test_path, floor)
                   : read_list_file(list, floor);
  source->finish(folder_channels(*source));
  return source;
}

}  // namespace shrink::detail
