// Image folders and list files (private to data/).
#pragma once

#include <shrink/config/data_options.hpp>
#include <shrink/data/source.hpp>

#include <memory>
#include <vector>

namespace shrink::detail {

// The split's images: class folders (`root/<class>/<image>`, class index = the folder's place in
// the sorted names, as torchvision's ImageFolder numbers them) or a list file of `path label`
// lines. The listing is kept compact (one string of names and their offsets: a few dozen bytes
// per image), images are read when asked for.
std::unique_ptr<Source> open_folder(const DataOptions& options, bool train,
                                    const std::vector<int64_t>& decode_floor);

}  // namespace shrink::detail
