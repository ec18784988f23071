"""Search spaces that more than one test reads."""

# The space of issue 33: several methods, feed-forward ranks and sparsity, whose mask init hangs on the fraction
# that only masked methods have (IA3 and prompt tuning take no masks). After its 7 start-up trials, the first
# model-based suggestion read the init against an inactive fraction and raised.
ISSUE_33_SPACE = """
method: {choices: [lora, ia3, prompt]}
target_modules: {choices: [attn_qv, all_linear]}
layer_rank: {choices: [0, 4, 8]}
ffn_rank: {choices: [0, 4]}
learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
sparsity: {fraction: {choices: [0.0, 0.5]}, init: {choices: [random, magnitude]}}
"""
