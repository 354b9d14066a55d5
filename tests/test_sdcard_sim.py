"""The simulated SD card: block accounting, each fault, and persistence across a "reboot" (a new SimCard on the
same folder). The journal's tests trust this sim, so the sim's own promises are pinned here."""

import errno
import json
import os

import pytest

from tools.sim.host.sdcard import PowerCut, SimCard

BS = 512


def make(tmp_path, capacity=16 * BS, **kw):
    return SimCard(str(tmp_path), capacity, block_size=BS, **kw)


def write_file(card, name, data, mode="wb"):
    with card.open(name, mode) as f:
        f.write(data)
        f.flush()


def read_file(card, name):
    with card.open(name, "rb") as f:
        return f.read()


def errno_of(excinfo):
    return excinfo.value.errno


# --- capacity accounting ---------------------------------------------------------------------------------------

def test_empty_card_has_all_blocks_free(tmp_path):
    card = make(tmp_path)
    assert card.free_bytes() == 16 * BS
    assert card.listdir() == []


def test_a_file_uses_its_data_blocks_plus_one_directory_block(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"")
    assert card.free_bytes() == 15 * BS  # directory entry only
    write_file(card, "a.log", b"x", "ab")
    assert card.free_bytes() == 14 * BS
    write_file(card, "a.log", b"y" * (BS - 1), "ab")  # exactly one block
    assert card.free_bytes() == 14 * BS
    write_file(card, "a.log", b"z", "ab")
    assert card.free_bytes() == 13 * BS
    assert card.size("a.log") == BS + 1


def test_remove_and_truncate_give_blocks_back(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"x" * (3 * BS))
    assert card.free_bytes() == 12 * BS
    write_file(card, "a.log", b"x")  # 'wb' truncates
    assert card.free_bytes() == 14 * BS
    card.remove("a.log")
    assert card.free_bytes() == 16 * BS
    assert card.listdir() == []


def test_a_write_past_capacity_writes_what_fits_then_raises_enospc(tmp_path):
    card = make(tmp_path, capacity=4 * BS)
    with card.open("a.log", "wb") as f:  # 1 directory block, 3 data blocks left
        with pytest.raises(OSError) as e:
            f.write(b"q" * (4 * BS))
    assert errno_of(e) == errno.ENOSPC
    assert card.size("a.log") == 3 * BS  # like MicroPython's FAT driver: the part that fits is written
    assert card.free_bytes() == 0


def test_creating_a_file_on_a_full_card_raises_enospc_and_creates_nothing(tmp_path):
    card = make(tmp_path, capacity=2 * BS)
    write_file(card, "a.log", b"x" * BS)
    with pytest.raises(OSError) as e:
        card.open("b.log", "ab")
    assert errno_of(e) == errno.ENOSPC
    assert card.listdir() == ["a.log"]


def test_in_place_rewrite_needs_no_new_block(tmp_path):
    card = make(tmp_path, capacity=2 * BS)
    write_file(card, "s.bin", bytes(BS))
    assert card.free_bytes() == 0
    with card.open("s.bin", "r+b") as f:
        f.seek(100)
        f.write(b"hello")
    data = read_file(card, "s.bin")
    assert data[100:105] == b"hello" and len(data) == BS


def test_missing_file_is_enoent(tmp_path):
    card = make(tmp_path)
    for call in (lambda: card.open("nope", "rb"), lambda: card.open("nope", "r+b"),
                 lambda: card.size("nope"), lambda: card.remove("nope")):
        with pytest.raises(OSError) as e:
            call()
        assert errno_of(e) == errno.ENOENT


def test_file_object_api(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"0123456789")
    with card.open("a.log", "rb") as f:
        f.seek(4)
        assert f.tell() == 4
        buf = bytearray(3)
        assert f.readinto(buf) == 3 and bytes(buf) == b"456"
        assert f.read() == b"789"
        f.seek(-2, 2)
        assert f.read(5) == b"89"
    with card.open("a.log", "ab") as f:
        f.write(memoryview(b"ab"))
    assert read_file(card, "a.log") == b"0123456789ab"


# --- faults ----------------------------------------------------------------------------------------------------

def test_full_forces_free_space_to_zero(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"x" * 10)
    card.full = True
    assert card.free_bytes() == 0
    write_file(card, "a.log", b"y" * 10, "ab")  # still inside its block
    with pytest.raises(OSError) as e:
        write_file(card, "a.log", b"z" * BS, "ab")
    assert errno_of(e) == errno.ENOSPC
    card.full = False
    assert card.free_bytes() > 0


def test_removed_card_raises_enodev_everywhere_even_on_open_files(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"x")
    f = card.open("a.log", "rb")
    card.removed = True
    calls = [lambda: card.open("a.log", "rb"), card.listdir, card.free_bytes, lambda: card.size("a.log"),
             lambda: card.remove("a.log"), f.read, lambda: f.seek(0)]
    for call in calls:
        with pytest.raises(OSError) as e:
            call()
        assert errno_of(e) == errno.ENODEV
    f.close()  # closing never raises
    card.removed = False
    assert read_file(card, "a.log") == b"x"


def test_write_error_raises_eio_and_changes_nothing(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"x")
    f = card.open("a.log", "ab")
    card.write_error = True
    with pytest.raises(OSError) as e:
        f.write(b"more")
    assert errno_of(e) == errno.EIO
    f.close()
    for call in (lambda: card.open("b.log", "wb"), lambda: card.remove("a.log")):
        with pytest.raises(OSError) as e:
            call()
        assert errno_of(e) == errno.EIO
    assert read_file(card, "a.log") == b"x"  # reads still work
    assert card.listdir() == ["a.log"]


@pytest.mark.parametrize("tail", ["prefix", "zeros", "garbage"])
def test_power_cut_keeps_a_prefix_and_fills_the_block_by_tail_kind(tmp_path, tail):
    card = make(tmp_path, seed=7)
    write_file(card, "a.log", b"A" * 100)
    card.power_cut_after(30, tail)
    with card.open("a.log", "ab") as f:
        f.write(b"B" * 20)  # 20 of the 30 bytes
        with pytest.raises(PowerCut):
            f.write(b"C" * 50)  # 10 bytes make it
    with pytest.raises(PowerCut):
        card.listdir()  # the old object is dead: a reboot makes a new one
    data = read_file(make(tmp_path), "a.log")
    assert data[:130] == b"A" * 100 + b"B" * 20 + b"C" * 10
    if tail == "prefix":
        assert len(data) == 130
    else:
        assert len(data) == BS  # to the end of that block
        rest = data[130:]
        if tail == "zeros":
            assert rest == bytes(len(rest))
        else:
            assert rest != bytes(len(rest))


def test_power_cut_garbage_is_reproducible_from_the_seed(tmp_path):
    out = []
    for run in ("one", "two"):
        card = SimCard(str(tmp_path / run), 16 * BS, block_size=BS, seed=3)
        card.power_cut_after(5, "garbage")
        with pytest.raises(PowerCut):
            write_file(card, "a.log", b"x" * 50)
        out.append(read_file(SimCard(str(tmp_path / run), 16 * BS), "a.log"))
    assert out[0] == out[1] and len(out[0]) == BS


def test_power_cut_in_an_in_place_write_scrambles_only_to_the_end_of_that_block(tmp_path):
    card = make(tmp_path)
    write_file(card, "s.bin", b"1" * BS + b"2" * BS)
    card.power_cut_after(4, "zeros")
    with pytest.raises(PowerCut):
        with card.open("s.bin", "r+b") as f:
            f.seek(10)
            f.write(b"N" * 20)
    data = read_file(make(tmp_path), "s.bin")
    assert data[:10] == b"1" * 10 and data[10:14] == b"NNNN"
    assert data[14:BS] == bytes(BS - 14)
    assert data[BS:] == b"2" * BS  # the next block (the other slot) is untouched


def test_power_cut_after_more_bytes_than_written_does_not_fire(tmp_path):
    card = make(tmp_path)
    card.power_cut_after(100)
    write_file(card, "a.log", b"x" * 60)
    assert card.power_cut_armed
    with pytest.raises(PowerCut):
        write_file(card, "a.log", b"y" * 60, "ab")
    assert read_file(make(tmp_path), "a.log") == b"x" * 60 + b"y" * 40


def test_power_cut_before_remove_removes_nothing(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"x")
    card.power_cut_before_remove()
    with pytest.raises(PowerCut):
        card.remove("a.log")
    assert make(tmp_path).listdir() == ["a.log"]


def test_power_cut_is_not_an_exception_so_firmware_cannot_swallow_it():
    assert issubclass(PowerCut, BaseException) and not issubclass(PowerCut, Exception)


# --- the control file ------------------------------------------------------------------------------------------

def set_faults(tmp_path, **faults):
    path = os.path.join(str(tmp_path), "faults.json")
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(faults, f)
    os.replace(tmp, path)


def test_faults_json_flips_faults_in_a_running_card(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"x")
    set_faults(tmp_path, removed=True)
    with pytest.raises(OSError) as e:
        card.listdir()
    assert errno_of(e) == errno.ENODEV
    set_faults(tmp_path, removed=False, full=True)
    assert card.free_bytes() == 0
    set_faults(tmp_path, full=False, write_error=True)
    with pytest.raises(OSError) as e:
        write_file(card, "a.log", b"y", "ab")
    assert errno_of(e) == errno.EIO
    set_faults(tmp_path, write_error=False)
    write_file(card, "a.log", b"y", "ab")
    assert read_file(card, "a.log") == b"xy"


def test_faults_json_power_cut_fires_once_and_is_removed_from_the_file(tmp_path):
    card = make(tmp_path)
    set_faults(tmp_path, power_cut_after={"nbytes": 3, "tail": "zeros"}, full=False)
    with pytest.raises(PowerCut):
        write_file(card, "a.log", b"hello")
    with open(os.path.join(str(tmp_path), "faults.json")) as f:
        assert json.load(f) == {"full": False}
    rebooted = make(tmp_path)  # reads the file again on its first operation: no second cut
    write_file(rebooted, "b.log", b"fine")
    assert read_file(rebooted, "a.log") == b"hel" + bytes(BS - 3)


def test_control_file_is_not_on_the_card(tmp_path):
    card = make(tmp_path)
    set_faults(tmp_path, full=False)
    assert card.listdir() == []


# --- persistence -----------------------------------------------------------------------------------------------

def test_content_and_space_survive_a_new_simcard_on_the_same_folder(tmp_path):
    card = make(tmp_path)
    write_file(card, "a.log", b"x" * 700)
    write_file(card, "b.bin", b"y")
    again = make(tmp_path)
    assert again.listdir() == ["a.log", "b.bin"]
    assert read_file(again, "a.log") == b"x" * 700
    assert again.free_bytes() == (16 - 3 - 2) * BS


def test_faults_set_on_the_object_do_not_outlive_it(tmp_path):
    card = make(tmp_path)
    card.full = True
    assert make(tmp_path).free_bytes() == 16 * BS
