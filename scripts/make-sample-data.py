#!/usr/bin/env python3
"""Regenerate data/customers.csv and data/orders.csv (deterministic).

The files are committed; this script only documents how they were made.
orders.csv ends with late corrections: rows that repeat an order_id with a
new status, as an upstream system sends them.
"""
import csv
import random
from datetime import datetime, timedelta

random.seed(42)
COUNTRIES = ["DE", "FR", "US", "JP", "BR", "IN"]
SEGMENTS = ["consumer", "business", "enterprise"]

with open("data/customers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "name", "country", "segment"])
    for cid in range(1, 201):
        w.writerow([cid, f"Customer {cid:03d}", random.choice(COUNTRIES),
                    random.choice(SEGMENTS)])

start = datetime(2024, 1, 1)
rows = []
for oid in range(1, 5001):
    created = start + timedelta(minutes=oid * 105 + random.randint(0, 60))
    status = random.choices(["pending", "completed", "cancelled"], [2, 7, 1])[0]
    rows.append([oid, random.randint(1, 200), f"{random.uniform(5, 500):.2f}",
                 status, created.strftime("%Y-%m-%d %H:%M:%S+00")])
corrections = []
for oid in sorted(random.sample(range(1, 5001), 200)):
    r = list(rows[oid - 1])
    r[3] = "completed" if r[3] == "pending" else "cancelled"
    corrections.append(r)

with open("data/orders.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["order_id", "customer_id", "total", "status", "created_at"])
    w.writerows(rows + corrections)
