import pytest
import torch

from charrnn.model import CharRNN, ModelConfig
from charrnn.stepper import Stepper


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole-lstm"])
@pytest.mark.parametrize("layers, input_kind", [(1, "embedding"), (3, "embedding"), (2, "onehot")])
def test_step_matches_the_fused_module(cell, layers, input_kind):
    torch.manual_seed(1)
    config = ModelConfig(vocab_size=13, cell=cell, layers=layers, hidden=24, embedding=6, input=input_kind)
    model = CharRNN(config).eval()
    ids = torch.randint(0, 13, (4, 15))
    with torch.no_grad():
        expected, _ = model(ids[:, :5])
        reference, ref_state = model(ids)
        _, warm_state = model(ids[:, :5])
    stepper = Stepper(model)
    state = stepper.split_state(warm_state)
    steps = [stepper.step(ids[:, t], state) for t in range(5, 15)]
    torch.testing.assert_close(torch.stack(steps, dim=1), reference[:, 5:], atol=1e-5, rtol=1e-4)
    lstm_like = cell.endswith("lstm")
    final_h = torch.stack([s[0] if lstm_like else s for s in state])
    torch.testing.assert_close(final_h, ref_state[0] if lstm_like else ref_state, atol=1e-5, rtol=1e-4)


def test_step_reads_tied_weights():
    torch.manual_seed(2)
    model = CharRNN(ModelConfig(vocab_size=9, layers=1, hidden=8, embedding=8, weight_tying=True)).eval()
    ids = torch.randint(0, 9, (2, 6))
    with torch.no_grad():
        reference, _ = model(ids)
    stepper = Stepper(model)
    state = stepper.split_state(model.init_state(2))
    steps = torch.stack([stepper.step(ids[:, t], state) for t in range(6)], dim=1)
    torch.testing.assert_close(steps, reference, atol=1e-5, rtol=1e-4)
