"""Data in: read pools in any common schema into Examples, render them with the chat template."""
