# Which bundle versions may replace the running one (bundle.newer_or_same): dotted numbers
# compared as numbers, labels after them ignored, older refused.
from ocpp16.bundle import newer_or_same


def test_newer_and_same_install():
    for new, run in (("1.4.1", "1.4.0"), ("1.10", "1.9.9"), ("2", "1.99"),
                     ("1.4", "1.4.0"), ("1.4.0", "1.4"), ("1.4.0-rc2", "1.4.0"),
                     ("1.4.0", "1.4.0-hotfix"), ("0.2.0", "0.2.0"), ("9.9.10-test", "9.9.9-test")):
        assert newer_or_same(new, run), (new, run)


def test_older_is_refused():
    for new, run in (("1.3.9", "1.4.0"), ("1.9", "1.10"), ("0.1.9", "0.2.0"),
                     ("1.4", "1.4.1"), ("dev", "0.2.0"), ("v2.0", "1.0")):
        assert not newer_or_same(new, run), (new, run)
