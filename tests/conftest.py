"""Shared test setup."""

import torch

# The tests check correctness on small tensors, where intra-op threads only add overhead (and, on
# a busy 2-core machine, oversubscription slows small matmuls by an order of magnitude).
torch.set_num_threads(1)
