#include "plugin_fixtures.hpp"
#include "test_paths.hpp"
#include "test_support.hpp"

#include <shrink/config/experiment.hpp>
#include <shrink/core/error.hpp>
#include <shrink/run/pipeline.hpp>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace {

constexpr const char* kFashion = "/usr/share/datasets/fashion-mnist";

// A folder holding exp.yaml beside a copy of the seed net, so relative paths resolve.
class ExperimentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = shrink::test::test_dir("shrink_experiment_test");
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(std::string(shrink::test::kTestModelDir) + "/mnist.pt", dir_ / "mnist.pt");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& yaml) {
    const fs::path file = dir_ / "exp.yaml";
    std::ofstream(file) << yaml;
    return file.string();
  }

  // The message of the error loading `yaml` throws, or "<no error>".
  std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
    return shrink::test::error_of([&] { shrink::Experiment::load(write(yaml), overrides); });
  }

  // The message of the error checking the whole run (plugins, sites) throws, or "<no error>".
  std::string plan_error_of(const std::string& yaml) {
    auto registry = shrink::test::registry_of({shrink::test::kPluginDir});
    shrink::RunOptions options;
    options.print_plan = true;
    try {
      testing::internal::CaptureStdout();
      shrink::run_experiment(shrink::Experiment::load(write(yaml)), *registry, options);
      testing::internal::GetCapturedStdout();
    } catch (const shrink::Error& e) {
      testing::internal::GetCapturedStdout();
      return e.what();
    }
    return "<no error>";
  }

  fs::path dir_;
};

const std::string kGood = std::string(R"(model: mnist.pt
data:
  path: )") + kFashion + R"(
  batch_size: 32
  normalize: {mean: [0.286], std: [0.353]}
pretrain: {epochs: 1, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
compress:
  - plugin: qat
    config_list:
      - op_names: [conv1, fc2]
        target_names: [_input_, weight, _output_]
        quant_dtype: int8
finetune: {steps: 10, optimizer: {name: adam, lr: 0.001}, scheduler: {name: step, step_size: 2, gamma: 0.5}}
export: {dir: out}
)";

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST_F(ExperimentTest, ReadsEveryKeyAndResolvesPathsBesideTheFile) {
  const shrink::Experiment x = shrink::Experiment::load(write(kGood));
  EXPECT_EQ(x.model, (dir_ / "mnist.pt").string());
  EXPECT_EQ(x.export_dir, (dir_ / "out").string());
  EXPECT_EQ(x.data.path, kFashion);
  EXPECT_EQ(x.batch_size, 32);
  // The old key normalize is the normalize transform of both splits.
  ASSERT_EQ(x.data.train_transforms.size(), 1u);
  EXPECT_EQ(x.data.train_transforms[0].name, "normalize");
  ASSERT_EQ(x.data.test_transforms.size(), 1u);
  EXPECT_DOUBLE_EQ(x.data.test_transforms[0].std[0], 0.353);
  EXPECT_TRUE(x.pretrain.enabled);
  EXPECT_EQ(x.pretrain.epochs, 1);
  EXPECT_DOUBLE_EQ(x.pretrain.optimizer.momentum, 0.9);
  EXPECT_EQ(x.finetune.steps, 10);
  EXPECT_EQ(x.finetune.optimizer.name, "adam");
  EXPECT_EQ(x.finetune.scheduler.name, "step");
  ASSERT_EQ(x.compress.size(), 1u);
  EXPECT_EQ(x.compress[0].plugin, "qat");
  EXPECT_EQ(x.compress[0].config_list.entries.size(), 1u);
}

TEST_F(ExperimentTest, SetOverridesAnyKeyBeforeValidation) {
  const shrink::Experiment x = shrink::Experiment::load(
      write(kGood), {"finetune.steps=3", "data.train_limit=640",
                     "compress.0.config_list.0.quant_dtype=uint8", "evaluate=false"});
  EXPECT_EQ(x.finetune.steps, 3);
  EXPECT_EQ(x.data.train_limit, 640);
  EXPECT_FALSE(x.evaluate);
  EXPECT_HAS(x.resolved_yaml, "uint8");
  // An override is validated like the file itself.
  EXPECT_HAS(error_of(kGood, {"finetune.epochs=many"}), "finetune.epochs: expected an integer");
  EXPECT_HAS(error_of(kGood, {"finetune.epoch=1"}), "finetune.epoch: unknown key");
  EXPECT_HAS(error_of(kGood, {"finetune.steps"}), "expected key.path=value");
  EXPECT_HAS(error_of(kGood, {"compress.7.plugin=x"}), "index 7 is out of range");
}

TEST_F(ExperimentTest, SetErrorsNameTheOverrideAndWhatWasExpected) {
  // A list needs an index: what was expected, not `stoul`.
  EXPECT_HAS(error_of(kGood, {"compress.plugin=x"}),
             "--set 'compress.plugin=x': compress is a list, so the next part of the path is an "
             "index, e.g. compress.0.plugin; got 'plugin'");
  EXPECT_HAS(error_of(kGood, {"compress.first.plugin=x"}), "e.g. compress.0.first");
  EXPECT_HAS(error_of(kGood, {"data.path.x=1"}),
             "--set 'data.path.x=1': data.path is a value, not a mapping");
  // A mapping the override creates is the override's too.
  EXPECT_HAS(error_of(kGood, {"seed.x=1"}), "--set 'seed.x=1': seed: expected an integer");
  // A bad value, or a key the override adds, is the override's, not exp.yaml:1:1's.
  EXPECT_HAS(error_of(kGood, {"finetune.epochs=many"}),
             "--set 'finetune.epochs=many': finetune.epochs: expected an integer");
  EXPECT_HAS(error_of(kGood, {"finetune.epoch=1"}),
             "--set 'finetune.epoch=1': finetune.epoch: unknown key");
  const std::string stage =
      "compress.0={plugin: qat, calibration: {batches: 0}, config_list: [{op_names: [conv1]}]}";
  EXPECT_HAS(error_of(kGood, {stage}),
             "--set '" + stage + "': compress[0].calibration.batches: 0 is below");
  EXPECT_EQ(error_of(kGood, {stage}).find("exp.yaml:1:"), std::string::npos);
  // What the file says is still placed in the file.
  EXPECT_HAS(error_of(kGood + "seed: [1]\n", {"finetune.epochs=1"}),
             "exp.yaml:15:7: seed: expected an integer");
}

TEST_F(ExperimentTest, SetPathsResolveAgainstTheCurrentFolderAsOutDoes) {
  const fs::path cwd = fs::current_path();
  const shrink::Experiment x = shrink::Experiment::load(write(kGood), {"export.dir=results/a"});
  EXPECT_EQ(x.export_dir, (cwd / "results/a").lexically_normal().string());
  EXPECT_EQ(x.model, (dir_ / "mnist.pt").string());  // from the file: beside the file
  fs::current_path(dir_);
  const shrink::Experiment here = shrink::Experiment::load(write(kGood), {"model=mnist.pt"});
  fs::current_path(cwd);
  EXPECT_EQ(here.model, (dir_ / "mnist.pt").string());
  EXPECT_HAS(error_of(kGood, {"model=no_such_model.pt"}), (cwd / "no_such_model.pt").string());
}

TEST_F(ExperimentTest, ErrorsNameFileLineColumnKeyAndWhatIsAllowed) {
  const std::string file = (dir_ / "exp.yaml").string();
  EXPECT_HAS(error_of(kGood + "epochs: 5\n"),
             file + ":15:1: epochs: unknown key (allowed: model, seed");
  EXPECT_HAS(error_of(kGood + "seed: [1]\n"), file + ":15:7: seed: expected an integer");
  EXPECT_HAS(error_of(kGood + "threads: -1\n"), "threads: -1 is below the minimum 0");
  EXPECT_HAS(error_of(kGood + "evaluate: maybe\n"), "evaluate: expected true or false");
  EXPECT_HAS(error_of("model: nothere.pt\ndata: {path: /tmp}\n"),
             file + ":1:8: model: no such file " + (dir_ / "nothere.pt").string());
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /no/such/folder}\n"),
             file + ":2:14: data.path: no such file or folder /no/such/folder");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp, transforms: [blur]}\n"),
             file +
                 ":2:33: data.transforms: unknown transform 'blur' (known: resize, "
                 "center_crop, random_resized_crop, random_crop, random_horizontal_flip, "
                 "to_channels, normalize)");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp, transforms: [{resize: [0, 2]}]}\n"),
             "data.transforms.resize.size: 0 is outside [1, 4096]");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp, resize: 32, transforms: []}\n"),
             "data.resize: not with data.transforms (write it as a transform there)");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp, batch_size: 0}\n"),
             "data.batch_size: 0 is below the minimum 1");
  EXPECT_HAS(
      error_of("model: mnist.pt\ndata: {path: /tmp, normalize: {mean: [0.1, 0.2], std: [1]}}\n"),
      "mean and std need the same, non-zero length");
  EXPECT_HAS(
      error_of(
          "model: mnist.pt\ndata: {path: /tmp}\npretrain: {epochs: 1, optimizer: {name: lbfgs}}\n"),
      "pretrain.optimizer.name: 'lbfgs' (allowed: sgd, adam, adamw)");
  EXPECT_HAS(
      error_of(
          "model: mnist.pt\ndata: {path: /tmp}\nfinetune: {epochs: 1, scheduler: {name: warm}}\n"),
      "finetune.scheduler.name: 'warm' (allowed: none, step, cosine)");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp}\ncompress: [{plugin: qat}]\n"),
             "compress[0].config_list: required");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp}\ncompress: {plugin: qat}\n"),
             "compress: expected a list of stages");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: [path: /tmp\n"), file + ":3:1: malformed YAML");
  EXPECT_HAS(error_of("data: {path: /tmp}\n"), "model: required");
  EXPECT_HAS(error_of("- 1\n- 2\n"), "expected a mapping");
  try {
    shrink::Experiment::load((dir_ / "missing.yaml").string());
    FAIL() << "no error for a missing file";
  } catch (const shrink::Error& e) {
    EXPECT_HAS(std::string(e.what()), "missing.yaml: no such experiment file");
  }
}

TEST_F(ExperimentTest, DuplicateKeysAtAnyDepthAreRefusedWithBothPlaces) {
  const std::string file = (dir_ / "exp.yaml").string();
  // yaml-cpp keeps both; the run would use the first and the report record the second.
  EXPECT_EQ(error_of("seed: 0\n" + kGood + "seed: 7\n"),
            file + ":16:1: seed: given twice (first at 1:1)");
  std::string in_entry = kGood;
  in_entry.replace(in_entry.find("quant_dtype: int8"), 17,
                   "quant_dtype: int8\n        quant_dtype: uint8");
  EXPECT_EQ(error_of(in_entry), file + ":13:9: quant_dtype: given twice (first at 12:9)");
  EXPECT_HAS(error_of(kGood, {"finetune={steps: 1, steps: 2}"}),
             "--set 'finetune={steps: 1, steps: 2}':1:12: steps: given twice (first at 1:2)");
  // The same key in different mappings, and aliases, are fine.
  EXPECT_EQ(error_of(kGood + "threads: &n 1\nseed: *n\n"), "<no error>");
  // A list as a key, and aliases that expand past a million values (the readers expand them).
  EXPECT_EQ(error_of(kGood + "? [a]\n: 1\n"),
            file + ":15:3: a key must be a plain value, not a list or mapping");
  std::string laughs = "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n";
  for (int i = 1; i < 8; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    laughs += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [" + prev;
    for (int k = 1; k < 10; ++k) laughs += ", " + prev;
    laughs += "]\n";
  }
  EXPECT_HAS(error_of(kGood + laughs),
             ": the document expands to more than 1000000 values through its aliases");
  EXPECT_HAS(error_of(kGood, {"plugin_paths=[[a]]"}), "plugin_paths: expected a list of strings");
  fs::create_directories(dir_ / "folder.yaml");
  EXPECT_EQ(
      shrink::test::error_of([&] { shrink::Experiment::load((dir_ / "folder.yaml").string()); }),
      (dir_ / "folder.yaml").string() + ": a folder, expected a YAML file");
}

TEST_F(ExperimentTest, TensorsDataSaysWhichFileIsTheTestSplit) {
  std::ofstream(dir_ / "data.pt") << "x";
  const std::string tensors = "model: mnist.pt\ndata: {format: tensors, path: data.pt";
  EXPECT_HAS(error_of(tensors + "}\n"),
             "data.test_path: required with format tensors (the evaluation file, or 'train' to "
             "evaluate on the training data)");
  const shrink::Experiment x = shrink::Experiment::load(write(tensors + ", test_path: train}\n"));
  EXPECT_EQ(x.data.test_path, x.data.path);
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp, list: /tmp}\n"),
             "data.list: only for format folder (this is idx)");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp, test_path: /tmp}\n"),
             "data.test_path: not for format idx (an IDX folder holds its t10k test split)");
}

TEST_F(ExperimentTest, SizeLikeValuesHaveBounds) {
  const std::string file = (dir_ / "exp.yaml").string();
  EXPECT_EQ(error_of(kGood + "threads: 100000\n"),
            file + ":15:10: threads: 100000 is above the maximum 256");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp, resize: 100000}\n"),
             "data.resize: 100000 is above the maximum 4096");
  EXPECT_HAS(error_of("model: mnist.pt\ndata: {path: /tmp, channels: 1000}\n"),
             "data.channels: 1000 is above the maximum 64");
}

// The plan check runs one sample through the model: a model that does not take the data, or a
// model with NaN weights, is one line before anything trains.
TEST_F(ExperimentTest, PlanRunsOneSampleThroughTheModel) {
  fs::copy_file(std::string(shrink::test::kTestModelDir) + "/resnet18.pt", dir_ / "resnet18.pt");
  std::string resnet = kGood;
  resnet.replace(resnet.find("model: mnist.pt"), 15, "model: resnet18.pt");
  resnet.replace(resnet.find("[conv1, fc2]"), 12, "[conv1, fc]");
  const std::string why = plan_error_of(resnet);
  EXPECT_HAS(why, (dir_ / "resnet18.pt").string() + " does not take the samples of " + kFashion +
                      " (one is [1, 1, 28, 28]): ");
  EXPECT_HAS(why, "channels");
  EXPECT_EQ(why.find('\n'), std::string::npos) << why;
  // With the data made 3x32x32 it does.
  resnet.replace(resnet.find("  batch_size: 32"), 16,
                 "  batch_size: 32\n  resize: 32\n  channels: 3");
  resnet.replace(resnet.find("mean: [0.286], std: [0.353]"), 27,
                 "mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]");
  EXPECT_EQ(plan_error_of(resnet), "<no error>");

  torch::jit::Module nan = torch::jit::load((dir_ / "mnist.pt").string());
  at::NoGradGuard no_grad;
  nan.attr("conv2").toModule().attr("weight").toTensor().view(-1)[7] = NAN;
  nan.save((dir_ / "mnist.pt").string());
  EXPECT_EQ(plan_error_of(kGood), (dir_ / "mnist.pt").string() +
                                      ": parameter conv2.weight holds 1 NaN or infinite value(s) "
                                      "of 25000");
}

// Images stored [N, H, W, C] (as numpy and PIL hand them over) for a model that takes
// [N, C, H, W]: the plan check says which layout the model takes.
TEST_F(ExperimentTest, ChannelsLastDataIsNamedAsSuch) {
  const fs::path data = dir_ / "nhwc.pt";
  const std::vector<char> bytes = torch::pickle_save(
      c10::ivalue::Tuple::create({torch::rand({4, 32, 32, 3}), torch::arange(4, torch::kLong)}));
  std::ofstream(data, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const std::string model = std::string(shrink::test::kTestModelDir) + "/own_cifar.pt";
  const std::string why =
      plan_error_of("model: " + model + "\ndata: {format: tensors, path: " + data.string() +
                    ", test_path: train}\n");
  EXPECT_HAS(
      why, model + " does not take the samples of " + data.string() + " (one is [1, 32, 32, 3]): ");
  EXPECT_HAS(why,
             "; it takes [1, 3, 32, 32]: are the samples channels last (NHWC)? store them "
             "as [N, C, H, W]");
  EXPECT_EQ(why.find('\n'), std::string::npos) << why;
}

TEST_F(ExperimentTest, StagesAreCheckedAgainstPluginsAndModelBeforeRunning) {
  EXPECT_EQ(plan_error_of(kGood), "<no error>");
  std::string unknown = kGood;
  unknown.replace(unknown.find("plugin: qat"), 11, "plugin: qatt");
  EXPECT_HAS(plan_error_of(unknown),
             "exp.yaml:8:5: compress[0].plugin: no plugin provides algorithm 'qatt'");
  std::string nothing = kGood;
  nothing.replace(nothing.find("[conv1, fc2]"), 12, "[conv9]");
  EXPECT_HAS(plan_error_of(nothing), "op_names: the model has no op 'conv9'");
  std::string bad_option = kGood;
  bad_option.replace(bad_option.find("    config_list:"), 0, "    options: {ema_decya: 0.9}\n");
  EXPECT_HAS(plan_error_of(bad_option), "compress[0]: plugin 'qat' rejected its options");
  EXPECT_HAS(plan_error_of(bad_option), "ema_decya");
  std::string bad_site = kGood;
  bad_site.replace(bad_site.find("quant_dtype: int8"), 17,
                   "quant_dtype: int8\n        granularity: per_channel");
  EXPECT_HAS(plan_error_of(bad_site), "per_channel granularity is supported for weights only");
}

TEST_F(ExperimentTest, PrintPlanListsTheResolvedPipeline) {
  auto registry = shrink::test::registry_of({shrink::test::kPluginDir});
  shrink::RunOptions options;
  options.print_plan = true;
  testing::internal::CaptureStdout();
  shrink::run_experiment(shrink::Experiment::load(write(kGood)), *registry, options);
  const std::string plan = testing::internal::GetCapturedStdout();
  EXPECT_HAS(plan, "compress  [0] qat");
  EXPECT_HAS(plan, ": 6 sites");
  EXPECT_HAS(
      plan, "conv1._input_0 int8 default default");  // scheme and granularity: the plugin's default
  EXPECT_HAS(plan, "fc2._output_0 int8 default default");
  EXPECT_HAS(plan, "finetune  10 steps, adam lr 0.001");
  EXPECT_FALSE(fs::exists(dir_ / "out")) << "print-plan must not write results";
}

TEST(SchedulerTest, LearningRateFollowsTheEpoch) {
  shrink::SchedulerSpec none;
  EXPECT_DOUBLE_EQ(none.lr_at(0.1, 7, 10), 0.1);
  shrink::SchedulerSpec step;
  step.name = "step";
  step.step_size = 2;
  step.gamma = 0.5;
  EXPECT_DOUBLE_EQ(step.lr_at(0.1, 0, 10), 0.1);
  EXPECT_DOUBLE_EQ(step.lr_at(0.1, 1, 10), 0.1);
  EXPECT_DOUBLE_EQ(step.lr_at(0.1, 2, 10), 0.05);
  EXPECT_DOUBLE_EQ(step.lr_at(0.1, 5, 10), 0.025);
  shrink::SchedulerSpec cosine;
  cosine.name = "cosine";
  cosine.eta_min = 0.001;
  EXPECT_DOUBLE_EQ(cosine.lr_at(0.1, 0, 4), 0.1);
  EXPECT_NEAR(cosine.lr_at(0.1, 2, 4), 0.001 + 0.099 * 0.5, 1e-12);
  EXPECT_NEAR(cosine.lr_at(0.1, 3, 4), 0.001 + 0.099 * (1 + std::cos(M_PI * 0.75)) / 2, 1e-12);
}

}  // namespace
