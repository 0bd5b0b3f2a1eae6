"""The order of the example gallery, for sphinx-gallery.

A class in its own module, named in ``conf.py`` by a string, keeps Sphinx's
configuration picklable.
"""

FIRST = ("quickstart.py", "pipeline_grid_search.py", "html_report.py")


class ExampleOrder:
    """The quickstart first, then the other examples that run, then the rest.

    Parameters
    ----------
    src_dir : str
        The gallery's folder (sphinx-gallery passes it).
    """

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in FIRST:
            return (FIRST.index(filename), filename)
        return (len(FIRST), filename)

    def __repr__(self):
        return "ExampleOrder"
