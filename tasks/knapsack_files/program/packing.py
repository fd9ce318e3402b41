"""Which items to take, given the order main.solve considers them in."""


# EVOLVE-BLOCK-START
def pack(order, values, weights, capacity):
    """Take items in order until the first one that does not fit."""
    chosen, room = [], capacity
    for i in order:
        if weights[i] > room:
            break
        chosen.append(i)
        room -= weights[i]
    return chosen
# EVOLVE-BLOCK-END
