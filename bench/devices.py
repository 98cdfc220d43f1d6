"""Device data benchmarks (issue 21's targets), each beside a peer in the same run.

  .venv/bin/python bench/devices.py BIN [sqlite|postgres] [APPLE_MB]

1. Import of one year of 5-minute CGM (105,120 readings) as a Dexcom Clarity CSV with
   `medmesh devices import` (wall time, the node's process included), beside the peer
   pandas `read_csv` of the same file (parsing alone, nothing stored). Target: under 5 s.
2. The glucose summary over 90 days through HTTP (`/api/patients/{id}/glucose/summary`,
   every metric, the readings read and opened from the sealed store), median of 20 calls,
   beside the peer iglu-python computing the same 17 metrics on the same readings in
   memory. Target: under 50 ms.
3. The AGP report of 14 days through HTTP as SVG and as one A4 page of PDF, median of 10
   each (the difference is the PDF's drawing), beside the peer `rsvg-convert -f pdf`
   (Debian's librsvg2-bin) turning the same SVG into a PDF, the process included.
4. A generated Apple Health export.xml of APPLE_MB megabytes (default 1024: heart rate
   every minute, steps, glucose) streamed by `medmesh devices import`: time and the peak
   resident memory of the process (`/usr/bin/time -v`), beside the peer Python
   `xml.etree.ElementTree.iterparse` with `clear()` (streaming, counting records).
"""

import datetime
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(__file__))
from bench_node import BenchNode  # noqa: E402


def clarity_year(path):
    start = datetime.datetime(2025, 1, 1, 0, 2, 17)
    rnd = random.Random(7)
    g = 140.0
    with open(path, "w") as f:
        f.write("Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,Source Device ID,"
                "Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),Glucose Rate of Change (mg/dL/min),"
                "Transmitter Time (Long Integer),Transmitter ID\n")
        f.write("1,,Device,,,Dexcom G7,Android G7,,,,,,,\n")
        for i in range(105_120):
            g = min(400, max(40, g + rnd.gauss(0, 4) + (140 - g) * 0.02))
            t = start + datetime.timedelta(minutes=5 * i)
            f.write(f"{i + 2},{t.strftime('%Y-%m-%dT%H:%M:%S')},EGV,,,,Android G7,{int(g)},,,,,{i},X1\n")


def apple_export(path, megabytes):
    rnd = random.Random(11)
    start = datetime.datetime(2015, 1, 1)
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE HealthData [\n<!ELEMENT HealthData (ExportDate,Me,(Record|Workout)*)>\n]>\n'
            '<HealthData locale="en_US">\n <ExportDate value="2024-01-01 10:00:00 +0000"/>\n')
    target = megabytes * 1024 * 1024
    with open(path, "w") as f:
        f.write(head)
        written, i = len(head), 0
        while written < target:
            t = start + datetime.timedelta(minutes=i)
            stamp = t.strftime("%Y-%m-%d %H:%M:%S +0000")
            if i % 5 == 0:
                rec = (f' <Record type="HKQuantityTypeIdentifierBloodGlucose" sourceName="Dexcom G7" sourceVersion="2.1" '
                       f'unit="mg/dL" creationDate="{stamp}" startDate="{stamp}" endDate="{stamp}" value="{rnd.randint(60, 250)}"/>\n')
            elif i % 7 == 0:
                rec = (f' <Record type="HKQuantityTypeIdentifierStepCount" sourceName="iPhone" sourceVersion="17.1" '
                       f'unit="count" creationDate="{stamp}" startDate="{stamp}" endDate="{stamp}" value="{rnd.randint(0, 120)}"/>\n')
            else:
                rec = (f' <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Apple Watch" sourceVersion="10.1" '
                       f'device="&lt;&lt;HKDevice: 0x1&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,1&gt;" '
                       f'unit="count/min" creationDate="{stamp}" startDate="{stamp}" endDate="{stamp}" value="{rnd.randint(50, 150)}">\n'
                       f'  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>\n </Record>\n')
            f.write(rec)
            written += len(rec)
            i += 1
        f.write("</HealthData>\n")


def timed_rss(cmd, env=None):
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-2000:]
    rss = next(int(l.split(":")[1]) for l in out.stderr.splitlines() if "Maximum resident set size" in l)
    return elapsed, rss / 1024, out.stdout


def main():
    if subprocess.run(["which", "rsvg-convert"], capture_output=True).returncode != 0:
        sys.exit("bench/devices.py: rsvg-convert is required (apt-get install librsvg2-bin)")
    binary = sys.argv[1]
    db = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
    apple_mb = int(sys.argv[3]) if len(sys.argv) > 3 else 1024
    work = tempfile.mkdtemp(prefix="medmesh-devices-bench-")
    node = BenchNode(binary, db)
    h = {"Authorization": f"Bearer {node.token}"}
    try:
        requests.put(f"{node.fhir}/Patient/cgm", json={"resourceType": "Patient", "id": "cgm"}, headers=h, timeout=30).raise_for_status()
        # 1. A year of CGM.
        csv = os.path.join(work, "clarity-year.csv")
        clarity_year(csv)
        t0 = time.perf_counter()
        node.cli("devices", "import", "--patient", "cgm", "--json", csv)
        ours = time.perf_counter() - t0
        import pandas as pd
        t0 = time.perf_counter()
        pd.read_csv(csv)
        peer = time.perf_counter() - t0
        print(f"| import, 105,120 readings (Clarity CSV), {db} | {ours:.2f} s | pandas read_csv {peer:.2f} s | {ours / peer:.1f}× the parse alone | < 5 s |")

        # 2. The summary over 90 days.
        q = "start=2025-03-01&end=2025-05-29&tz=UTC"
        times = []
        for _ in range(21):
            t0 = time.perf_counter()
            r = requests.get(f"{node.base}/api/patients/cgm/glucose/summary?{q}", headers=h, timeout=60)
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
        ours = statistics.median(times[1:]) * 1000
        readings = requests.get(f"{node.base}/api/patients/cgm/glucose/readings?{q}", headers=h, timeout=60).json()["readings"]
        import iglu_python as iglu
        data = pd.DataFrame({"id": "cgm", "time": pd.to_datetime([x["local"] for x in readings]), "gl": [x["value"] for x in readings]})
        t0 = time.perf_counter()
        for f in (iglu.mean_glu, iglu.sd_glu, iglu.cv_glu, iglu.gmi, iglu.below_percent, iglu.above_percent, iglu.in_range_percent,
                  iglu.active_percent, iglu.mage, iglu.conga, iglu.modd, iglu.lbgi, iglu.hbgi, iglu.gri, iglu.j_index):
            f(data)
        peer = (time.perf_counter() - t0) * 1000
        print(f"| summary over 90 days ({len(readings):,} readings), {db} | {ours:.1f} ms (median of 20, over HTTP) | iglu-python {peer:.0f} ms | {peer / ours:.0f}× faster | < 50 ms |")

        # 3. The AGP report, drawn and printed.
        q14 = "start=2025-05-16&end=2025-05-29&tz=UTC"

        def median_ms(path):
            times, body = [], b""
            for _ in range(11):
                t0 = time.perf_counter()
                r = requests.get(f"{node.base}{path}", headers=h, timeout=60)
                times.append(time.perf_counter() - t0)
                r.raise_for_status()
                body = r.content
            return statistics.median(times[1:]) * 1000, body

        svg_ms, svg = median_ms(f"/api/patients/cgm/glucose/agp.svg?{q14}")
        pdf_ms, pdf = median_ms(f"/api/patients/cgm/glucose/agp.pdf?{q14}")
        assert pdf.startswith(b"%PDF-")
        svg_path = os.path.join(work, "agp.svg")
        with open(svg_path, "wb") as f:
            f.write(svg)
        rsvg = []
        for _ in range(10):
            t0 = time.perf_counter()
            subprocess.run(["rsvg-convert", "-f", "pdf", "-o", os.path.join(work, "agp-rsvg.pdf"), svg_path], check=True)
            rsvg.append(time.perf_counter() - t0)
        peer = statistics.median(rsvg) * 1000
        drawing = pdf_ms - svg_ms
        print(f"| AGP report, 14 days, {db} | SVG {svg_ms:.1f} ms, PDF {pdf_ms:.1f} ms (over HTTP, median of 10): the PDF's drawing {drawing:.1f} ms, {len(pdf) // 1024} KiB | "
              f"rsvg-convert SVG→PDF {peer:.1f} ms (process included), {os.path.getsize(os.path.join(work, 'agp-rsvg.pdf')) // 1024} KiB | {peer / drawing:.1f}× faster | |")

        # 4. A large Apple Health export, streamed.
        xml = os.path.join(work, "export.xml")
        apple_export(xml, apple_mb)
        size = os.path.getsize(xml) / 1024 / 1024
        elapsed, rss, _ = timed_rss([binary, "devices", "import", "--patient", "cgm", "--json", xml, *node.args], env=node.env)
        peer_script = ("import sys, xml.etree.ElementTree as ET\nn=0\nfor ev, el in ET.iterparse(sys.argv[1]):\n"
                       "    if el.tag == 'Record': n += 1\n    el.clear()\nprint(n)\n")
        p_elapsed, p_rss, _ = timed_rss([sys.executable, "-c", peer_script, xml])
        print(f"| Apple Health export.xml, {size:,.0f} MB, {db} | {elapsed:.0f} s, peak RSS {rss:,.0f} MB | "
              f"Python iterparse {p_elapsed:.0f} s, {p_rss:,.0f} MB | {p_elapsed / elapsed:.1f}× the peer's speed | bounded memory |")
    finally:
        node.stop()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
