"""Raises events whose data are Python business objects, as the seeds' human-interaction
example does: a namedtuple (`Approval("...")`) and a dataclass.

Usage: raise_custom_payloads.py ENDPOINT NAMEDTUPLE_INSTANCE DATACLASS_INSTANCE
Prints `READY raised` once both events were accepted by the sidecar.
"""

import sys
from collections import namedtuple
from dataclasses import dataclass

from durabletask import client

Approval = namedtuple("Approval", ["approver"])


@dataclass
class ApprovalRecord:
    approver: str
    level: int


def main() -> None:
    endpoint, namedtuple_instance, dataclass_instance = sys.argv[1:4]
    c = client.TaskHubGrpcClient(host_address=endpoint)
    c.raise_orchestration_event(
        namedtuple_instance, "approval_received", data=Approval("manager@company.com")
    )
    c.raise_orchestration_event(
        dataclass_instance, "approval_received", data=ApprovalRecord("director@company.com", 2)
    )
    print("READY raised", flush=True)


if __name__ == "__main__":
    main()
