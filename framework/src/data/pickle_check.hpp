// A first look at a pickle stream (torch.save's data.pkl) before LibTorch unpickles it (private
// to data/).
#pragma once

#include <cstddef>
#include <string>

namespace shrink::detail {

// Whether every opcode of the pickle in [data, data + size) is one the pickle protocol (0 to 5)
// defines, every length it declares lies inside the stream and every memo index it names could
// have been written by a stream this long. LibTorch 1.13's unpickler trusts these fields: it
// reserves memo tables and strings of the declared size before reading anything (found by
// fuzzing: tests/fuzz/regressions/tensors/pickle_memo_index_30_gb). Returns "" or what is wrong,
// with the byte offset.
std::string check_pickle(const unsigned char* data, std::size_t size);

}  // namespace shrink::detail
