#include "data/folder_source.hpp"

#include "data/image_codec.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

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

class FolderSource : public Source {
 public:
  FolderSource(std::string root, std::vector<std::string> classes, std::vector<int64_t> floor)
      : root_(std::move(root)), classes_(std::move(classes)), floor_(std::move(floor)) {
    offsets_.push_back(0);
  }
  void add(const std::string& relative, int64_t label) {
    names_ += relative;
    offsets_.push_back(names_.size());
    labels_.push_back(static_cast<int32_t>(label));
  }
  void finish(int channels) {
    channels_ = channels;
    names_.shrink_to_fit();
    offsets_.shrink_to_fit();
    labels_.shrink_to_fit();
  }

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  Sample get(int64_t i) const override {
    return {decode_image(name(i), channels_, floor_), labels_[static_cast<std::size_t>(i)]};
  }
  std::string name(int64_t i) const override {
    const auto k = static_cast<std::size_t>(i);
    std::string stored = names_.substr(offsets_[k], offsets_[k + 1] - offsets_[k]);
    return stored[0] == '/' ? stored : root_ + "/" + stored;  // a list file's absolute paths
  }
  at::Tensor labels() const override { return at::tensor(labels_, at::kInt).to(at::kLong); }
  std::vector<std::string> classes() const override { return classes_; }
  bool decodes() const override { return true; }

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<int64_t> floor_;
  std::string names_;                 // every image's path below root_, one after the other
  std::vector<std::size_t> offsets_;  // where each starts; size() + 1 of them
  std::vector<int32_t> labels_;
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
std::vector<std::string> class_images(const fs::path& root, const std::string& name) {
  std::vector<std::pair<std::string, std::string>> found;  // (folder, file) below root
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
    found.emplace_back(relative.parent_path().string(), relative.filename().string());
  }
  SHRINK_CHECK(!ec, folder.string() << ": cannot be listed (" << ec.message() << ")");
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  out.reserve(found.size());
  for (const auto& [dir, file] : found) out.push_back(dir + "/" + file);
  return out;
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
    const std::vector<std::string> images = class_images(root, classes[c]);
    SHRINK_CHECK(!images.empty(), root << "/" << classes[c]
                                       << ": an empty class folder (no .jpg, .jpeg or .png "
                                          "image in it)");
    for (const std::string& image : images) source->add(image, static_cast<int64_t>(c));
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
