"""Stage 2, features: quality refinement, language / category / item tags, generated descriptions and translations, prompts."""
