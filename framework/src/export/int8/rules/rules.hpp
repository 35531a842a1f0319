// Each op family's rules (one file in rules/ each), registered by RuleTable::standard().
#pragma once

namespace shrink::int8 {

class RuleTable;

void add_fake_quant_rules(RuleTable& table);  // activations' fake-quants: quantize
void add_conv2d_rules(RuleTable& table);      // quantized::conv2d[_relu], BatchNorm folded
void add_linear_rules(RuleTable& table);      // quantized::linear[_relu]; small ones float
void add_pooling_rules(RuleTable& table);     // max / avg / adaptive avg pooling on int8
void add_relu_rules(RuleTable& table);        // relu, hardtanh on int8
void add_reshape_rules(RuleTable& table);     // reshape, view, flatten, ... on int8
void add_dropout_rules(RuleTable& table);     // evaluation: the identity
void add_add_rules(RuleTable& table);         // quantized::add[_relu]
void add_cat_rules(RuleTable& table);         // quantized::cat
void add_hardswish_rules(RuleTable& table);   // quantized::hardswish
void add_batch_norm_rules(RuleTable& table);  // quantized::batch_norm[_relu]: BatchNorm alone
void add_sigmoid_rules(RuleTable& table);     // sigmoid, hardsigmoid on int8 (a fixed grid)
void add_mul_rules(RuleTable& table);         // quantized::mul[_relu]; silu as a * sigmoid(a)
void add_chunk_rules(RuleTable& table);       // chunk, split on int8

}  // namespace shrink::int8
