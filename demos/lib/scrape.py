"""Reads kafka-transit's admin listener: `/metrics` parsed with the Prometheus Python
client's OpenMetrics parser (strict: a malformed exposition raises), and the probes.

    python3 scrape.py metrics URL [OUT_FILE]   # prints `name{labels} value` lines
    python3 scrape.py status URL PATH          # prints the HTTP status and body
"""
import sys
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text):
    """{(name, frozenset(labels.items())): value} for every sample."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def main():
    command, url = sys.argv[1], sys.argv[2]
    if command == "metrics":
        status, text = fetch(url + "/metrics")
        assert status == 200, f"GET /metrics answered {status}: {text}"
        if len(sys.argv) > 3:
            with open(sys.argv[3], "w", encoding="utf-8") as out:
                out.write(text)
        for (name, labels), value in sorted(samples(text).items(), key=lambda s: (s[0][0], sorted(s[0][1]))):
            rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
            print(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")
    elif command == "status":
        status, body = fetch(url + sys.argv[3])
        print(status, body.strip())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
