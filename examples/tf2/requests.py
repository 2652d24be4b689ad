"""A local stand-in for `requests.get` of the data files public TF2 programs download (no network).

Known URLs are answered with local data of the same format (see DATA); any other URL raises
ConnectionError, as a machine without network access would.
"""

import numpy as np


def _titanic_csv():
    """Titanic-shaped CSV rows (survived, pclass, name, sex, age, sibsp, parch, ticket, fare), made up."""
    rng = np.random.RandomState(0)
    rows = ["survived,pclass,name,sex,age,sibsp,parch,ticket,fare"]
    for i in range(200):
        sex = "female" if rng.rand() < 0.4 else "male"
        pclass = int(rng.choice([1, 2, 3]))
        rows.append(f'{int(rng.rand() < (0.7 if sex == "female" else 0.2))},{pclass},"Passenger, Mx. Number {i}",'
                    f'{sex},{rng.randint(1, 80)},{rng.randint(0, 3)},{rng.randint(0, 3)},{100000 + i},'
                    f'{rng.uniform(5, 250):.4f}')
    return ("\n".join(rows) + "\n").encode()


DATA = {
    "https://raw.githubusercontent.com/tflearn/tflearn.github.io/master/resources/titanic_dataset.csv": _titanic_csv,
}


class Response:
    def __init__(self, content):
        self.content = content
        self.status_code = 200
        self.text = content.decode()


def get(url, *args, **kwargs):
    """The local stand-in's data for `url`; ConnectionError for a URL it does not know."""
    if url not in DATA:
        raise ConnectionError(f"no network here, and no local stand-in for {url}")
    return Response(DATA[url]())
