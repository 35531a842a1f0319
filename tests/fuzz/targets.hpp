// What each fuzz target feeds to Shrink's readers of untrusted input. Each returns whether the
// input was read (true) or refused with a shrink::Error (false: the contract, one line); any other
// exception, crash or sanitizer finding is a bug. Used by the libFuzzer binaries
// (fuzz_<target>.cpp, scripts/fuzz.sh) and by the regression test that replays every kept input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace shrink_fuzz {

// A YAML experiment; after the first NUL byte, NUL-separated `--set` overrides.
bool experiment(const uint8_t* data, std::size_t size);
// A config_list, planned against the quick-start net's ops (sites and pruning targets).
bool config_list(const uint8_t* data, std::size_t size);
// An IDX file (gzip or plain).
bool idx(const uint8_t* data, std::size_t size);
// A torch.save((inputs, targets)) file loaded as a tensors data split with 10 classes.
bool tensors(const uint8_t* data, std::size_t size);
// An image file (JPEG, PNG or neither) decoded as a colour and as a gray folder reads it, and at
// a scaled size.
bool image(const uint8_t* data, std::size_t size);
// A plugin file's checks before dlopen.
bool plugin_file(const uint8_t* data, std::size_t size);

struct Target {
  const char* name;
  bool (*run)(const uint8_t*, std::size_t);
};
const std::vector<Target>& targets();

}  // namespace shrink_fuzz
