"""Networks (linear, mlp), the LightningModule that trains any of them, and their metrics."""
