"""The analyst agent: weighs the researcher's findings and recommends."""
