#include <shrink/core/error.hpp>
#include <shrink/core/files.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/merged_masks.hpp"

#include <torch/script.h>
#include <torch/serialize.h>

#include <filesystem>

namespace shrink {

// masks.pt, readable by torch.load: {op: {weight_mask, bias_mask}}, in the shapes of the model
// before any channel removal.
void ExportMasksPass::run(RunContext& c) {
  const MaskSet merged = c.masks_before_removal.empty() ? merged_masks(c) : c.masks_before_removal;
  c10::impl::GenericDict all(c10::StringType::get(), c10::AnyType::get());
  for (const auto& kv : merged) {
    c10::impl::GenericDict masks(c10::StringType::get(), c10::TensorType::get());
    masks.insert("weight_mask", kv.second.first);
    if (kv.second.second.defined()) masks.insert("bias_mask", kv.second.second);
    all.insert(kv.first, masks);
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(all));
  std::filesystem::create_directories(c.staging);
  const std::filesystem::path file = std::filesystem::path(c.staging) / "masks.pt";
  write_file_atomically(file, std::string_view(bytes.data(), bytes.size()));
}

}  // namespace shrink
