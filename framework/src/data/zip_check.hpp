// A first look at a zip file (torch.save's format) before LibTorch reads it (private to data/).
#pragma once

#include <string>

namespace shrink::detail {

// Whether the zip directory of `file` is consistent with the file: its entries lie inside it and
// none declares more bytes than the file could hold. LibTorch's reader trusts these fields (it
// allocates a record's declared size before reading it), so a corrupt or crafted file is refused
// here. Returns "" or what is wrong.
std::string check_zip_directory(const std::string& file);

}  // namespace shrink::detail
