"""How attractive an item is; main.solve considers the items in decreasing score."""


# EVOLVE-BLOCK-START
def item_score(value, weight, capacity):
    """Value per unit of weight."""
    return value / weight
# EVOLVE-BLOCK-END
