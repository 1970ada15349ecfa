# Open a journal as a boot would and report it (run by tests/mp/txlog.py):
#   micropython journal_check.py JOURNAL_DIR
# prints "L <log line>" for everything the journal reports while opening, then
#   CHECK <queued records> <corrupt> <unknown>
#   R <seq> <kind> <tx> <attempts>      for every queued record
import sys
from ocpp16 import journal


def main(root):
    lines = []
    j = journal.Journal(root, log=lines.append)
    for ln in lines:
        print("L " + ln)
    print("CHECK %d %d %d" % (len(j), j.corrupt, j.unknown))
    for seq, kind, tx, att, flags in j.records():
        print("R %d %d %d %d" % (seq, kind, tx, att))


main(sys.argv[1])
