"""Extra handler groups that the registry tests load by import string or entry point."""
