"""Discovery: campaigns on Ray that sample, screen, relax and judge round by round, and reward fine-tuning."""
