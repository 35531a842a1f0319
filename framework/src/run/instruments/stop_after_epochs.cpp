#include <shrink/run/context.hpp>
#include <shrink/run/instruments.hpp>

namespace shrink {

void StopAfterEpochs::on_epoch(const EpochEnd& epoch, RunContext& context) {
  if (!epoch.resumable) return;
  if (context.pretrain.epochs_done + context.finetune.epochs_done < epochs_) return;
  context.say("stopped after " + std::to_string(epochs_) +
              " epochs as asked; continue with --resume");
  throw StopRequested{};
}

}  // namespace shrink
