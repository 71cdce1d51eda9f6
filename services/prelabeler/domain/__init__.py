"""The prelabeler's pure rules: which texts it embeds, which models it serves, and the pre-labels it builds."""
