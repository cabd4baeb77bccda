"""Snippets written for the shipped-pair test, so no training file contains them.

Each is (prefix, suffix): the span between them must be filled with code; an empty fill does
not parse (it is the only statement of a block, or the right-hand side of an assignment).
"""

SNIPPETS = [
    (
        "def clamp(value, low, high):\n    if value < low:\n        ",
        "\n    if value > high:\n        return high\n    return value\n",
    ),
    ("def count_words(text):\n    counts = {}\n    for word in text.split():\n        ", "\n    return counts\n"),
    (
        "class Stack:\n    def __init__(self):\n        ",
        "\n\n    def push(self, item):\n        self.items.append(item)\n",
    ),
    (
        "def read_lines(path):\n    with open(path) as handle:\n        ",
        "\n\n\ndef main():\n    print(read_lines('data.txt'))\n",
    ),
    (
        "import os\n\n\ndef list_python_files(folder):\n    names = ",
        "\n    return [n for n in names if n.endswith('.py')]\n",
    ),
    ("def is_even(number):\n    ", "\n\n\ndef is_odd(number):\n    return not is_even(number)\n"),
    (
        "def parse_args(argv):\n    import argparse\n    parser = ",
        "\n    parser.add_argument('--name')\n    return parser.parse_args(argv)\n",
    ),
    ("def first_positive(numbers):\n    for n in numbers:\n        if n > 0:\n            ", "\n    return None\n"),
    (
        "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n"
        "    def norm(self):\n        ",
        "\n",
    ),
    ("def safe_divide(a, b):\n    try:\n        ", "\n    except ZeroDivisionError:\n        return 0.0\n"),
]
