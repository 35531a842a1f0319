// Throughput and peak memory of Shrink's loader on an image folder, as training reads it: a
// shuffled epoch of batches, random_resized_crop + random_horizontal_flip + normalize, W workers.
//   cmake --build build --target loader_bench
//   build/bin/loader_bench FOLDER|LIST.txt [--workers 2] [--batch 64] [--images 20000] [--size 56]
// Prints one JSON line: images/s over `images` images (after 10 warm-up batches), and the
// process's peak resident memory. bench/loader_vs_torch.sh runs it beside PyTorch's DataLoader.
#include <shrink/data/loader.hpp>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

struct Args {
  std::string folder;
  int64_t workers = 2, batch = 64, images = 20000, size = 56;
};

Args parse(int argc, char** argv) {
  Args a;
  a.folder = argc > 1 ? argv[1] : "";
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const int64_t value = std::atoll(argv[i + 1]);
    if (key == "--workers") a.workers = value;
    if (key == "--batch") a.batch = value;
    if (key == "--images") a.images = value;
    if (key == "--size") a.size = value;
  }
  return a;
}

shrink::DataOptions options(const Args& a) {
  shrink::DataOptions o;
  o.format = "folder";
  const bool list = a.folder.size() > 4 && a.folder.compare(a.folder.size() - 4, 4, ".txt") == 0;
  (list ? o.list : o.path) = a.folder;
  (list ? o.test_list : o.test_path) = a.folder;
  o.workers = a.workers;
  shrink::TransformSpec crop, flip, normalize, resize, center;
  crop.name = "random_resized_crop";
  crop.size = {a.size, a.size};
  flip.name = "random_horizontal_flip";
  normalize.name = "normalize";
  normalize.mean = {0.286, 0.286, 0.286};
  normalize.std = {0.353, 0.353, 0.353};
  resize.name = "resize";
  resize.size = {a.size};
  center.name = "center_crop";
  center.size = {a.size, a.size};
  o.train_transforms = {crop, flip, normalize};
  o.test_transforms = {resize, center, normalize};
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.folder.empty()) {
    std::cerr << "usage: loader_bench FOLDER [--workers W] [--batch B] [--images N] [--size S]\n";
    return 2;
  }
  at::set_num_threads(1);
  const shrink::DataOptions o = options(a);
  const auto open_start = std::chrono::steady_clock::now();
  const shrink::DataSplit split(shrink::open_builtin_source(o, true, {}), o, true, 0);
  const double open_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - open_start).count();
  shrink::Loader loader(split, split.order(0), a.batch, true, 0);
  shrink::Batch batch;
  for (int i = 0; i < 10 && loader.next(batch); ++i) {
  }
  const auto start = std::chrono::steady_clock::now();
  int64_t seen = 0;
  double checksum = 0;
  while (seen < a.images && loader.next(batch)) {
    seen += batch.size();
    checksum += batch.inputs[0][0][0][0].item<double>();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::cout << "{\"loader\": \"shrink\", \"workers\": " << a.workers
            << ", \"samples\": " << split.size() << ", \"images\": " << seen
            << ", \"images_per_s\": " << static_cast<double>(seen) / seconds
            << ", \"open_seconds\": " << open_seconds
            << ", \"max_rss_mb\": " << static_cast<double>(usage.ru_maxrss) / 1024.0
            << ", \"checksum\": " << checksum << "}\n";
  return 0;
}
