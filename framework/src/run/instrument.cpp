#include <shrink/run/instrument.hpp>
#include <shrink/run/pass.hpp>

namespace shrink {

PassMode Instrument::before_pass(const Pass& pass, RunContext& context) {
  (void)pass;
  (void)context;
  return PassMode::kRun;
}

void Instrument::after_pass(const Pass& pass, RunContext& context, PassMode mode, double seconds) {
  (void)pass;
  (void)context;
  (void)mode;
  (void)seconds;
}

void Instrument::on_epoch(const EpochEnd& epoch, RunContext& context) {
  (void)epoch;
  (void)context;
}

Instruments::Instruments() = default;
Instruments::~Instruments() = default;
Instruments::Instruments(Instruments&&) noexcept = default;
Instruments& Instruments::operator=(Instruments&&) noexcept = default;

Instrument& Instruments::add(std::unique_ptr<Instrument> instrument) {
  list_.push_back(std::move(instrument));
  return *list_.back();
}

void Instruments::before_run(RunContext& context) {
  for (auto& i : list_) i->before_run(context);
}

PassMode Instruments::before_pass(const Pass& pass, RunContext& context) {
  PassMode mode = PassMode::kRun;
  for (auto& i : list_) {
    if (i->before_pass(pass, context) == PassMode::kRestore) mode = PassMode::kRestore;
  }
  return mode;
}

void Instruments::after_pass(const Pass& pass, RunContext& context, PassMode mode, double seconds) {
  for (auto& i : list_) i->after_pass(pass, context, mode, seconds);
}

void Instruments::after_run(RunContext& context) {
  for (auto& i : list_) i->after_run(context);
}

void Instruments::on_batch(const BatchEnd& batch) {
  for (auto& i : list_) i->on_batch(batch);
}

void Instruments::on_epoch(const EpochEnd& epoch, RunContext& context) {
  for (auto& i : list_) i->on_epoch(epoch, context);
}

void Instruments::on_line(const std::string& line) {
  for (auto& i : list_) i->on_line(line);
}

}  // namespace shrink
