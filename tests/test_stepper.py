import pytest
import torch

from charrnn.model import CharRNN, ModelConfig
from charrnn.stepper import Stepper


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 3])
def test_step_matches_the_fused_module(cell, layers):
    torch.manual_seed(1)
    model = CharRNN(ModelConfig(vocab_size=13, cell=cell, layers=layers, hidden=24, embedding=6)).eval()
    ids = torch.randint(0, 13, (4, 15))
    with torch.no_grad():
        expected, _ = model(ids[:, :5])
        reference, ref_state = model(ids)
        _, warm_state = model(ids[:, :5])
    stepper = Stepper(model)
    state = stepper.split_state(warm_state)
    steps = [stepper.step(ids[:, t], state) for t in range(5, 15)]
    torch.testing.assert_close(torch.stack(steps, dim=1), reference[:, 5:], atol=1e-5, rtol=1e-4)
    final_h = torch.stack([s[0] if cell == "lstm" else s for s in state])
    torch.testing.assert_close(final_h, ref_state[0] if cell == "lstm" else ref_state, atol=1e-5, rtol=1e-4)
