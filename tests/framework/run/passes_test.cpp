// The run's passes and instruments on their own: each pass on a small context, the instruments
// around them (progress, checkpoints, stop and resume), the pass list an experiment gives.
#include "plugin_fixtures.hpp"
#include "run/checkpoint.hpp"
#include "sigmoid_net.hpp"
#include "test_paths.hpp"
#include "test_support.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/interrupt.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/run/instruments.hpp>
#include <shrink/run/passes.hpp>
#include <shrink/run/pipeline.hpp>
#include <shrink/run/plan.hpp>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace shrink {
namespace {

namespace fs = std::filesystem;

// Everything the instruments are told, in order.
class Recorder : public Instrument {
 public:
  std::vector<std::string> lines;
  std::vector<EpochEnd> epochs;
  std::vector<std::pair<std::string, PassMode>> passes;
  int batches = 0;
  void on_line(const std::string& line) override { lines.push_back(line); }
  void on_epoch(const EpochEnd& e, RunContext&) override { epochs.push_back(e); }
  void on_batch(const BatchEnd&) override { ++batches; }
  void after_pass(const Pass& p, RunContext&, PassMode mode, double) override {
    passes.emplace_back(p.name(), mode);
  }
};

// A pass that only counts how it was called.
class CountingPass : public Pass {
 public:
  explicit CountingPass(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  void run(RunContext&) override { ++runs; }
  void restore(RunContext&) override { ++restores; }
  int runs = 0, restores = 0;

 private:
  std::string name_;
};

std::vector<std::unique_ptr<Pass>> one(std::unique_ptr<Pass> pass) {
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(std::move(pass));
  return passes;
}

class PassesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::test_dir("shrink_passes");
    fs::remove_all(dir_);
    x_.model = std::string(test::kTestModelDir) + "/mnist.pt";
    x_.batch_size = 32;
    x_.test_batch_size = 50;
    x_.pretrain.enabled = true;
    x_.pretrain.epochs = 2;
    x_.pretrain.optimizer.lr = 0.01;
    x_.pretrain.optimizer.momentum = 0.9;
    x_.export_dir = dir_.string();
    x_.resolved_yaml = "test";
  }
  void TearDown() override {
    fs::remove_all(dir_);
    fs::remove_all(dir_.string() + ".partial");
  }

  // A context on the quick-start net and 64 training / 100 test samples of noise.
  // A split of tensors held in memory, as a tensors file gives them.
  static DataSplit split(const at::Tensor& inputs, const at::Tensor& targets, bool train) {
    return DataSplit(memory_source(inputs, targets, train ? "train" : "test"), DataOptions{}, train,
                     0);
  }

  std::unique_ptr<RunContext> context() {
    auto c = std::make_unique<RunContext>();
    c->experiment = &x_;
    c->options = &options_;
    c->out_dir = dir_.string();
    c->staging = c->out_dir + ".partial";
    c->model = std::make_unique<Model>(Model::load(x_.model));
    at::Generator g = at::detail::createCPUGenerator(7);
    test_inputs_ = at::randn({100, 1, 28, 28}, g);
    test_targets_ = at::randint(10, {100}, g, at::kLong);
    c->train = split(at::randn({64, 1, 28, 28}, g), at::randint(10, {64}, g, at::kLong), true);
    c->test = split(test_inputs_, test_targets_, false);
    return c;
  }

  // Pretraining from seed 0, stopped (resumably) after its first epoch: <dir>/checkpoint.pt.
  // Returns what the instruments were told.
  std::vector<std::string> stop_after_one_epoch() {
    auto c = context();
    torch::manual_seed(0);
    Instruments stopping;
    stopping.add(std::make_unique<RunLog>());
    stopping.add(std::make_unique<CheckpointWriter>());
    stopping.add(std::make_unique<StopAfterEpochs>(1));
    auto& said = static_cast<Recorder&>(stopping.add(std::make_unique<Recorder>()));
    EXPECT_THROW(run_passes(*c, one(std::make_unique<TrainPass>("pretrain")), stopping),
                 StopRequested);
    return said.lines;
  }

  // A ptq stage on `config_list`, calibrated on `batches` batches of `batch_size`.
  void add_ptq_stage(const char* config_list, int64_t batches, int64_t batch_size = 0) {
    StageSpec stage;
    stage.plugin = "ptq";
    stage.config_list = ConfigList::parse_text(config_list, "test");
    stage.calibration.batches = batches;
    stage.calibration.batch_size = batch_size;
    x_.compress.push_back(stage);
  }

  at::Tensor first_weight(RunContext& c) {
    return (*c.model->module().parameters().begin()).detach().clone();
  }

  fs::path dir_;
  at::Tensor test_inputs_, test_targets_;
  Experiment x_;
  RunOptions options_;
};

TEST_F(PassesTest, TrainPassTrainsEveryEpochAndPrintsNothingItself) {
  auto c = context();
  const at::Tensor before = first_weight(*c);
  Instruments instruments;
  auto& recorder = static_cast<Recorder&>(instruments.add(std::make_unique<Recorder>()));
  torch::manual_seed(0);
  ::testing::internal::CaptureStdout();
  run_passes(*c, one(std::make_unique<TrainPass>("pretrain")), instruments);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "");
  ASSERT_EQ(recorder.epochs.size(), 2u);
  EXPECT_EQ(recorder.epochs[1].epoch, 2);
  EXPECT_EQ(recorder.epochs[1].images, 64);
  EXPECT_TRUE(recorder.epochs[1].resumable);
  EXPECT_EQ(recorder.batches, 4);
  EXPECT_EQ(c->pretrain.epochs_done, 2);
  EXPECT_EQ(c->pretrain.steps_done, 4);
  EXPECT_FALSE(first_weight(*c).equal(before));
}

TEST_F(PassesTest, EvaluatePassGivesTheShareOfCorrectArgmax) {
  auto c = context();
  Instruments instruments;
  auto& recorder = static_cast<Recorder&>(instruments.add(std::make_unique<Recorder>()));
  run_passes(*c, one(std::make_unique<EvaluatePass>("baseline")), instruments);
  torch::NoGradGuard no_grad;
  c->model->module().eval();
  const at::Tensor out = c->model->module().forward({test_inputs_}).toTensor();
  const double expected = out.argmax(1).eq(test_targets_).to(at::kDouble).mean().item<double>();
  EXPECT_DOUBLE_EQ(c->summary.baseline_accuracy, expected);
  ASSERT_EQ(recorder.lines.size(), 1u);
  EXPECT_EQ(recorder.lines[0].rfind("baseline accuracy ", 0), 0u) << recorder.lines[0];
}

TEST_F(PassesTest, RestoredPassesAreRestoredNotRun) {
  class RestoreFirst : public Instrument {
    PassMode before_pass(const Pass& p, RunContext&) override {
      return p.name() == "a" ? PassMode::kRestore : PassMode::kRun;
    }
  };
  auto c = context();
  Instruments instruments;
  instruments.add(std::make_unique<RestoreFirst>());
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(std::make_unique<CountingPass>("a"));
  passes.push_back(std::make_unique<CountingPass>("b"));
  run_passes(*c, passes, instruments);
  const auto& a = static_cast<CountingPass&>(*passes[0]);
  const auto& b = static_cast<CountingPass&>(*passes[1]);
  EXPECT_EQ(a.runs, 0);
  EXPECT_EQ(a.restores, 1);
  EXPECT_EQ(b.runs, 1);
  EXPECT_EQ(b.restores, 0);
}

// Stopped after one epoch and resumed, training ends where an uninterrupted run does.
TEST_F(PassesTest, StopAndResumeGiveTheUninterruptedResult) {
  auto straight = context();
  torch::manual_seed(0);
  Instruments plain;
  run_passes(*straight, one(std::make_unique<TrainPass>("pretrain")), plain);

  const std::vector<std::string> said = stop_after_one_epoch();
  ASSERT_TRUE(fs::exists(dir_ / "checkpoint.pt"));
  ASSERT_FALSE(said.empty());
  EXPECT_NE(said.back().find("stopped after 1 epochs"), std::string::npos);

  auto resumed = context();
  torch::manual_seed(123);  // the checkpoint's RNG state takes over
  Instruments resuming;
  auto& seen = static_cast<Recorder&>(resuming.add(std::make_unique<Recorder>()));
  resuming.add(std::make_unique<RunLog>());
  resuming.add(std::make_unique<ResumeFromCheckpoint>(dir_ / "checkpoint.pt"));
  resuming.add(std::make_unique<CheckpointWriter>());
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(std::make_unique<CountingPass>("before"));
  passes.push_back(std::make_unique<TrainPass>("pretrain"));
  passes.push_back(std::make_unique<CountingPass>("publish"));
  run_passes(*resumed, passes, resuming);
  // The history is whole (the first epoch came with the checkpoint); the log, with the results.
  ASSERT_EQ(resumed->history.size(), 2u);
  EXPECT_EQ(resumed->history[0]["epoch"], 1);
  EXPECT_EQ(resumed->history[1]["epoch"], 2);
  EXPECT_EQ(resumed->history[1]["phase"], "pretrain");
  EXPECT_DOUBLE_EQ(resumed->history[1]["loss"].get<double>(), seen.epochs[0].loss);
  std::ifstream log(fs::path(resumed->staging) / "run.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(std::regex_search(text, std::regex("^[0-9:]{8} resuming after pretrain epoch 1")))
      << text;
  EXPECT_NE(text.find(" pretrain epoch 2/2: loss "), std::string::npos) << text;
  EXPECT_EQ(static_cast<CountingPass&>(*passes[0]).restores, 1);
  ASSERT_EQ(seen.epochs.size(), 1u);
  EXPECT_EQ(seen.epochs[0].epoch, 2);
  EXPECT_NE(seen.lines.at(0).find("resuming after pretrain epoch 1"), std::string::npos);
  const auto expected = straight->model->module().named_parameters();
  const auto got = resumed->model->module().named_parameters();
  auto e = expected.begin();
  for (auto g = got.begin(); g != got.end() && e != expected.end(); ++g, ++e) {
    EXPECT_TRUE((*g).value.equal((*e).value)) << (*g).name;
  }
  EXPECT_FALSE(fs::exists(dir_ / "checkpoint.pt"));  // the run ended: it served its purpose
}

// A checkpoint from before sites on one tensor merged numbers the quantizers' sites otherwise:
// resuming it would load one site's state into another.
TEST_F(PassesTest, ResumeRefusesACheckpointOfAnOlderLayout) {
  stop_after_one_epoch();
  Checkpoint old = Checkpoint::load(dir_ / "checkpoint.pt");
  nlohmann::json meta = nlohmann::json::parse(old.meta);
  meta.erase("layout");
  old.meta = meta.dump();
  old.save(dir_ / "checkpoint.pt", nullptr);
  auto c = context();
  Instruments resuming;
  resuming.add(std::make_unique<ResumeFromCheckpoint>(dir_ / "checkpoint.pt"));
  try {
    run_passes(*c, one(std::make_unique<TrainPass>("pretrain")), resuming);
    FAIL() << "resumed a checkpoint of another layout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("was written by an older Shrink, which numbered "
                                         "quantization sites otherwise; run without --resume"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(PassesTest, ResumeRefusesAnotherExperimentsCheckpoint) {
  stop_after_one_epoch();
  x_.resolved_yaml = "another";
  auto other = context();
  Instruments resuming;
  resuming.add(std::make_unique<ResumeFromCheckpoint>(dir_ / "checkpoint.pt"));
  try {
    run_passes(*other, one(std::make_unique<TrainPass>("pretrain")), resuming);
    FAIL() << "resumed another experiment's checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("was written by a different experiment"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(PassesTest, QuantizeAndCalibratePassesSetEverySiteUp) {
  auto registry = test::registry_of({test::kPluginDir});
  add_ptq_stage("- {op_names: [conv1, fc2], target_names: [_input_, weight], quant_dtype: int8}", 2,
                16);
  auto c = context();
  c->stages = check_stages(x_, *c->model, *registry);
  Instruments instruments;
  auto& recorder = static_cast<Recorder&>(instruments.add(std::make_unique<Recorder>()));
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(std::make_unique<QuantizeStagePass>(0));
  passes.push_back(std::make_unique<CalibratePass>(0));
  passes.push_back(std::make_unique<ExportCalibrationPass>());
  run_passes(*c, passes, instruments);
  ASSERT_EQ(c->quantizers.size(), 1u);
  QuantizerInstance& q = *c->quantizers[0];
  ASSERT_EQ(q.site_count(), 4);
  for (int site = 0; site < q.site_count(); ++site) {
    const Calibration cal = q.export_site(site);
    ASSERT_TRUE(cal.scale.defined()) << q.site_spec(site).module_name;
    EXPECT_GT(cal.scale.min().item<double>(), 0.0);
  }
  ASSERT_EQ(c->calibration.size(), 1u);
  EXPECT_EQ(c->calibration[0]["samples"].get<int64_t>(), 32);
  // Each site in the report with the state its plugin declared, at its final values.
  EXPECT_TRUE(fs::exists(fs::path(c->staging) / "calibration.json"));
  ASSERT_EQ(c->sites.size(), 4u);
  for (int site = 0; site < q.site_count(); ++site) {
    const nlohmann::json& state = c->sites[static_cast<std::size_t>(site)]["state"];
    EXPECT_EQ(state.size(), q.site_state(site).size());
    for (const SiteState& s : q.site_state(site)) {
      ASSERT_TRUE(state.contains(s.name)) << s.name;
      EXPECT_EQ(state[s.name]["learnable"].get<bool>(), s.learnable);
      if (s.value.numel() == 1) {
        EXPECT_DOUBLE_EQ(state[s.name]["value"].get<double>(), s.value.item<double>());
      }
    }
  }
  ASSERT_EQ(recorder.lines.size(), 2u);
  EXPECT_EQ(recorder.lines[0], "compress: ptq on 4 sites");
  EXPECT_EQ(recorder.lines[1].rfind("calibrate: ptq on 32 samples (2 batches), ", 0), 0u);
}

TEST_F(PassesTest, PassListFollowsTheExperiment) {
  auto registry = test::registry_of({test::kPluginDir});
  add_ptq_stage("- {op_types: [Conv2d, Linear], target_names: [_input_, weight]}", 1);
  x_.export_int8 = true;
  auto c = context();
  c->stages = check_stages(x_, *c->model, *registry);
  std::vector<std::string> names;
  for (const auto& p : build_passes(*c)) names.push_back(p->name());
  const std::vector<std::string> expected = {"prepare",
                                             "pretrain",
                                             "evaluate-baseline",
                                             "compress[0]",
                                             "calibrate[0]",
                                             "evaluate-compressed",
                                             "measure",
                                             "export-calibration",
                                             "export-model",
                                             "export-int8",
                                             "latency",
                                             "report",
                                             "publish"};
  EXPECT_EQ(names, expected);
}

// Did it pay: a pruned model in the staging folder is timed beside the fp32 model as loaded and
// frozen, at batch 1 and the training batch, and held against the faster of the two.
TEST_F(PassesTest, LatencyPassHoldsResultsAgainstTheBestFp32) {
  auto c = context();
  fs::create_directories(c->staging);
  fs::copy_file(x_.model, fs::path(c->staging) / "model_pruned.pt");
  Instruments instruments;
  auto& said = static_cast<Recorder&>(instruments.add(std::make_unique<Recorder>()));
  run_passes(*c, one(std::make_unique<MeasureLatencyPass>()), instruments);
  const auto& rows = c->latency["rows"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["batch"], 1);
  EXPECT_EQ(rows[1]["batch"], 32);
  for (const auto& row : rows) {
    const double loaded = row["fp32_ms"], frozen = row["fp32_frozen_ms"];
    EXPECT_GT(loaded, 0);
    EXPECT_GT(frozen, 0);
    EXPECT_EQ(row["best_fp32_ms"].get<double>(), std::min(loaded, frozen));
    EXPECT_EQ(row["best_fp32"], loaded <= frozen ? "as loaded" : "frozen + optimize_for_inference");
    const double pruned = row["pruned_best_ms"];
    EXPECT_EQ(pruned,
              std::min(row["pruned_ms"].get<double>(), row["pruned_frozen_ms"].get<double>()));
    EXPECT_DOUBLE_EQ(row["pruned_speedup"].get<double>(), std::min(loaded, frozen) / pruned);
    EXPECT_FALSE(row.contains("int8_ms"));
  }
  ASSERT_EQ(c->summary.latency.size(), 2u);
  EXPECT_TRUE(said.lines.empty());  // the run's summary says them, once
  EXPECT_TRUE(
      std::regex_search(c->summary.latency[1],
                        std::regex("^latency, batch 32, 1 thread: best fp32 [0-9.]+ ms "
                                   "\\((as loaded|frozen \\+ optimize_for_inference)\\); "
                                   "pruned [0-9.]+ ms: [0-9.]+x, (SLOWER than|faster than|about as "
                                   "fast as) the best fp32 \\([0-9.]+x cold; its pruned channels "
                                   "are zeros, remove_channels: true removes them\\)$")))
      << c->summary.latency[1];
}

// A model that cannot be timed costs the table, not the run (its results are written by then).
TEST_F(PassesTest, ALatencyFailureIsAWarning) {
  auto c = context();
  fs::create_directories(c->staging);
  fs::copy_file(std::string(test::kTestModelDir) + "/own_cifar.pt",
                fs::path(c->staging) / "model_pruned.pt");  // takes 3x32x32, not 1x28x28
  Instruments instruments;
  auto& said = static_cast<Recorder&>(instruments.add(std::make_unique<Recorder>()));
  run_passes(*c, one(std::make_unique<MeasureLatencyPass>()), instruments);
  EXPECT_TRUE(c->latency.is_null());
  EXPECT_TRUE(c->summary.latency.empty());
  ASSERT_EQ(said.lines.size(), 1u);
  EXPECT_EQ(said.lines[0].rfind("warning: latency: the pruned model does not take input of shape "
                                "[1, 1, 28, 28]: ",
                                0),
            0u)
      << said.lines[0];
}

// The plan fails before anything trains: a plugin whose export_site throws, or a NaN weight, is
// found by the dry run of every stage; an int8 export with nothing to lower is refused.
TEST_F(PassesTest, PlanDryRunsEveryStageBeforeTraining) {
  auto registry = test::registry_of({test::test_plugins("throws_in_export"),
                                     test::test_plugins("returns_nan"), test::kPluginDir});
  auto c = context();
  StageSpec stage;
  stage.where = "exp.yaml:3:3";
  stage.config_list = ConfigList::parse_text("- {op_names: [conv1], target_names: [weight]}", "t");
  auto refused = [&](const std::string& plugin, bool export_model) {
    x_.compress = {stage};
    x_.compress[0].plugin = plugin;
    x_.export_model = export_model;
    try {
      check_stages(x_, *c->model, *registry);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  const std::string thrown = refused("throws_in_export", true);
  EXPECT_NE(thrown.find("compress[0]"), std::string::npos) << thrown;
  EXPECT_NE(thrown.find("export_site"), std::string::npos) << thrown;
  EXPECT_NE(thrown.find("conv1"), std::string::npos) << thrown;
  const std::string nan = refused("returns_nan", false);
  EXPECT_NE(nan.find("conv1.weight"), std::string::npos) << nan;
  EXPECT_EQ(nan.find('\n'), std::string::npos) << nan;  // one line
  // qat on conv1's weight only: fine for model_qat.pt, nothing for an int8 export to lower.
  EXPECT_EQ(refused("qat", true), "accepted");
  x_.export_int8 = true;
  const std::string int8 = refused("qat", true);
  EXPECT_NE(int8.find("export.int8: no Conv2d or Linear has its weight quantized with an "
                      "activation site"),
            std::string::npos)
      << int8;
}

// A pruning stage's masker gets its dry run too: one importance and one calc_mask per pruned op
// with every check on, so that a NaN or misshapen mask fails the plan, not the stage's training.
TEST_F(PassesTest, PlanDryRunsThePruningStagesMasker) {
  auto registry = test::registry_of({test::test_plugins("nan_mask"), test::kPluginDir});
  auto c = context();
  auto refused = [&](const std::string& plugin, const std::string& mistake) {
    StageSpec stage;
    stage.where = "exp.yaml:3:3";
    stage.plugin = plugin;
    if (!mistake.empty()) stage.options.set("mistake", mistake);
    stage.config_list =
        ConfigList::parse_text("- {op_names: [conv1, conv2], sparse_ratio: 0.5}", "t");
    x_.compress = {stage};
    try {
      check_stages(x_, *c->model, *registry);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(refused("l1_norm", ""), "accepted");
  const std::string nan = refused("nan_mask", "");
  EXPECT_NE(nan.find("exp.yaml:3:3: compress[0]"), std::string::npos) << nan;
  EXPECT_NE(nan.find("plugin 'nan_mask'"), std::string::npos) << nan;
  EXPECT_NE(nan.find("op conv1"), std::string::npos) << nan;
  EXPECT_NE(nan.find("non-finite"), std::string::npos) << nan;
  EXPECT_EQ(nan.find('\n'), std::string::npos) << nan;  // one line
  const std::string shape = refused("nan_mask", "shape");
  EXPECT_NE(shape.find("calc_mask"), std::string::npos) << shape;
  EXPECT_NE(shape.find("shape"), std::string::npos) << shape;
}

// remove_channels gets its dry run at the plan too: an op channel removal cannot follow (a
// sigmoid, which maps a removed channel's zeros to 0.5) fails the plan, not the end of the
// pruning stage's training.
TEST_F(PassesTest, PlanDryRunsChannelRemoval) {
  auto registry = test::registry_of({test::kPluginDir});
  torch::jit::Module root = test::conv_sigmoid_net(10);
  fs::create_directories(dir_);
  const std::string sigmoid_model = (dir_ / "sigmoid.pt").string();
  root.save(sigmoid_model);
  auto planned = [&](const std::string& model, const char* pruned) {
    x_.model = model;
    StageSpec prune, remove;
    prune.where = "exp.yaml:3:3";
    prune.plugin = "l1_norm";
    prune.config_list = ConfigList::parse_text(pruned, "t");
    remove.where = "exp.yaml:5:3";
    remove.remove_channels = true;
    x_.compress = {prune, remove};
    Model m = Model::load(model);
    try {
      check_stages(x_, m, *registry);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  const std::string mnist = std::string(test::kTestModelDir) + "/mnist.pt";
  EXPECT_EQ(planned(mnist, "- {op_names: [conv1, conv2], sparse_ratio: 0.5}"), "accepted");
  const std::string refused = planned(sigmoid_model, "- {op_names: [conv], sparse_ratio: 0.5}");
  EXPECT_NE(refused.find("exp.yaml:5:3: compress[1].remove_channels: channel removal cannot "
                         "follow aten::sigmoid: it reads pruned channels of conv"),
            std::string::npos)
      << refused;
}

// Ctrl-C is only noted by its handler; the run stops at the next pass (or batch) boundary, as a
// StopRequested that carries the signal, and the pass under way is not cut short.
TEST_F(PassesTest, AnInterruptStopsTheRunAtTheNextPassBoundary) {
  default_interrupts();  // even when the tests were started with SIGINT ignored
  catch_interrupts();
  clear_interrupt();
  auto c = context();
  auto first = std::make_unique<CountingPass>("first");
  auto second = std::make_unique<CountingPass>("second");
  CountingPass* ran_first = first.get();
  CountingPass* ran_second = second.get();
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(std::move(first));
  passes.push_back(std::move(second));
  class RaiseAfterFirst : public Instrument {
   public:
    void after_pass(const Pass& p, RunContext&, PassMode, double) override {
      if (p.name() == "first") std::raise(SIGINT);
    }
  };
  Instruments instruments;
  instruments.add(std::make_unique<RaiseAfterFirst>());
  instruments.add(std::make_unique<StopOnInterrupt>());
  int signal = 0;
  try {
    run_passes(*c, passes, instruments);
  } catch (const StopRequested& stop) {
    signal = stop.signal;
  }
  clear_interrupt();
  default_interrupts();  // the rest of the tests run as they would without the handler
  EXPECT_EQ(signal, SIGINT);
  EXPECT_EQ(ran_first->runs, 1);
  EXPECT_EQ(ran_second->runs, 0);
}

TEST(ProgressPrinterTest, PrintsOneLineAnEpochAndWhatPassesSay) {
  std::ostringstream out;
  ProgressPrinter printer(out, /*terminal=*/false);
  RunContext c;
  printer.on_batch({"pretrain", 1, 2, 1, 10, 2.0});  // no bar off a terminal
  printer.on_epoch({"pretrain", 1, 2, 0.5, 0.25, 0.01, 0.5, 320, true, nullptr}, c);
  printer.on_line("baseline accuracy 0.9");
  EXPECT_EQ(out.str(),
            "pretrain epoch 1/2: loss 0.5000, accuracy 0.2500, lr 0.01, 640 images/s, 0.5 s\n"
            "baseline accuracy 0.9\n");
}

}  // namespace
}  // namespace shrink
