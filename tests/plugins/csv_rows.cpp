// A data-source plugin (ABI 1.6) reading a format of its own: a CSV file of `label,pixel,...` rows,
// one square gray image per row. Its keys in `data:`: `side` (the image's side), and, to test the
// host's checks, `fail_at` (get throws for that sample) and `wrong_shape_at` (returns a row of
// another shape for it).
#include <shrink/sdk.hpp>

#include <fstream>
#include <sstream>

namespace {

class CsvRows : public shrink::Dataset {
 public:
  explicit CsvRows(const shrink::Config& options) : Dataset(options) {
    const std::string split = options.get("split", "train");
    const std::string file = options.get(split == "train" ? "path" : "test_path", "");
    side_ = options.get_int("side", 28);
    fail_at_ = options.get_int("fail_at", -1);
    wrong_shape_at_ = options.get_int("wrong_shape_at", -1);
    std::ifstream in(file);
    if (!in) throw shrink::InvalidArgument("cannot read '" + file + "'");
    std::string line;
    std::vector<uint8_t> pixels;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      std::istringstream row(line);
      std::string cell;
      std::getline(row, cell, ',');
      labels_.push_back(std::stoll(cell));
      int64_t count = 0;
      while (std::getline(row, cell, ',')) {
        pixels.push_back(static_cast<uint8_t>(std::stoi(cell)));
        ++count;
      }
      if (count != side_ * side_) {
        throw shrink::InvalidArgument(
            file + ": row " + std::to_string(labels_.size()) + " has " + std::to_string(count) +
            " pixels, side " + std::to_string(side_) + " needs " + std::to_string(side_ * side_));
      }
    }
    const auto n = static_cast<int64_t>(labels_.size());
    images_ = torch::from_blob(pixels.data(), {n, 1, side_, side_}, torch::kUInt8).clone();
  }

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  std::vector<int64_t> shape() const override { return {1, side_, side_}; }
  std::pair<torch::Tensor, int64_t> get(int64_t index) const override {
    if (index == fail_at_) throw std::runtime_error("row " + std::to_string(index) + " is broken");
    if (index == wrong_shape_at_) return {images_[index].view({side_, side_}), 0};
    return {images_[index], labels_[static_cast<std::size_t>(index)]};
  }

 private:
  int64_t side_ = 28, fail_at_ = -1, wrong_shape_at_ = -1;
  std::vector<int64_t> labels_;
  torch::Tensor images_;
};

}  // namespace

SHRINK_PLUGIN("csv_rows", "1.0.0") {
  plugin.dataset<CsvRows>("csv_rows", "Gray images as CSV rows: label,pixel,...")
      .data_keys({"side", "fail_at", "wrong_shape_at"});
}
