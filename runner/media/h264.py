"""The H.264 bits the runner writes itself: a "nothing changed" picture.

On a still screen the runner still sends a picture every second (LiveKit's SFU marks a screen
share stopped after 2 s without packets). Encoding an unchanged 1080p picture costs libx264
about 7 ms of CPU, most of the idle cost. The same information fits in a
P slice of about 10 bytes that skips every macroblock: the decoder shows the reference picture
again, bit for bit (a skipped macroblock with no coded neighbour moves by (0, 0)).

The skip picture is a reference picture, so any number of them may follow each other (picture
order count type 2 forbids two non-reference pictures in a row). It takes the next frame_num,
which libx264 does not know about: every later slice of the stream gets its frame_num moved on
by the number of skip pictures since the last IDR (a fixed-width field: rewritten in place).
With one reference frame (``ultrafast`` .. ``veryfast``) the skip picture replaces libx264's
reference with an identical one, so libx264 predicts from exactly what the decoder holds.

Only for streams this module can fully describe: CAVLC (Baseline), frames only, picture order
count type 2 (libx264 without B-frames), one reference frame, sliding-window marking. Anything
else gets ``None`` from ``skip()`` and a real encode.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.bitstream.annexb import (
    H264_NAL_PPS,
    H264_NAL_SLICE_IDR,
    H264_NAL_SLICE_NON_IDR,
    H264_NAL_SPS,
    START_CODE_4,
    h264_nal_type,
    is_h264_slice,
    nalu_spans,
)
from runner.bitstream.bits import BitReader, BitWriter
from runner.bitstream.escaping import escape_rbsp, unescape_rbsp

NAL_REF_SLICE = 0x40 | H264_NAL_SLICE_NON_IDR  # nal_ref_idc 2, as libx264 marks its P pictures
SLICE_TYPE_P_ALL = 5  # P, and every slice of the picture is P
HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


@dataclass(frozen=True)
class StreamInfo:
    """What a slice header needs from the SPS and PPS."""

    pps_id: int
    log2_max_frame_num: int
    poc_type: int
    width_mbs: int
    height_mbs: int
    frame_mbs_only: bool
    max_ref_frames: int
    cabac: bool
    redundant_pic_cnt: bool
    deblocking_control: bool
    pic_init_qp: int = 26
    log2_max_poc_lsb: int = 0  # poc type 0 only
    bottom_field_poc: bool = False  # PPS bottom_field_pic_order_in_frame_present_flag

    @property
    def skippable(self) -> bool:
        return not self.cabac and self.poc_type == 2 and self.frame_mbs_only and self.max_ref_frames == 1


def parse_sps(nal: bytes) -> dict[str, int]:
    """The fields of a sequence parameter set (NAL header byte included) that slices need."""
    r = BitReader(unescape_rbsp(nal[1:]))
    profile = r.u(8)
    r.u(16)  # constraint flags, reserved bits, level_idc
    sps_id = r.ue()
    if profile in HIGH_PROFILES:
        if r.ue() == 3:  # chroma_format_idc
            r.u(1)
        r.ue()
        r.ue()  # bit depths
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag: not written by the encoders used here
            raise ValueError("SPS with scaling matrices is not supported")
    log2_max_frame_num = r.ue() + 4
    poc_type = r.ue()
    log2_max_poc_lsb = 0
    if poc_type == 0:
        log2_max_poc_lsb = r.ue() + 4
    elif poc_type == 1:
        raise ValueError("SPS with picture order count type 1 is not supported")
    max_ref_frames = r.ue()
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    return {"sps_id": sps_id, "log2_max_frame_num": log2_max_frame_num, "poc_type": poc_type,
            "width_mbs": width_mbs, "height_mbs": height_units * (2 - frame_mbs_only),
            "frame_mbs_only": frame_mbs_only, "max_ref_frames": max_ref_frames,
            "log2_max_poc_lsb": log2_max_poc_lsb}


def sps_profile_level_id(au: bytes) -> str | None:
    """profile_idc, constraint flags and level_idc of the first SPS in an Annex B access unit, as
    the six hex digits of SDP's ``profile-level-id`` (``42c028``: Constrained Baseline, level 4;
    ``640028``: High), or None without an SPS."""
    for start, end in nalu_spans(au):
        if h264_nal_type(au[start]) == H264_NAL_SPS and end - start > 3:
            return au[start + 1:start + 4].hex()
    return None


def parse_pps(nal: bytes) -> dict[str, int]:
    r = BitReader(unescape_rbsp(nal[1:]))
    pps_id, sps_id, cabac = r.ue(), r.ue(), r.u(1)
    bottom_field_poc = r.u(1)  # bottom_field_pic_order_in_frame_present_flag
    if r.ue():  # num_slice_groups_minus1
        raise ValueError("PPS with slice groups is not supported")
    r.ue()
    r.ue()  # num_ref_idx_l0/l1_default_active_minus1
    weighted_pred = r.u(1)
    r.u(2)  # weighted_bipred_idc
    pic_init_qp = 26 + r.se()
    r.se()
    r.se()  # pic_init_qs, chroma_qp_index_offset
    deblocking_control = r.u(1)
    r.u(1)  # constrained_intra_pred_flag
    redundant = r.u(1)
    if weighted_pred:
        raise ValueError("PPS with weighted prediction is not supported")
    return {"pps_id": pps_id, "sps_id": sps_id, "cabac": cabac, "deblocking_control": deblocking_control,
            "redundant_pic_cnt": redundant, "pic_init_qp": pic_init_qp, "bottom_field_poc": bottom_field_poc}


class SkipFrames:
    """Follows an encoder's output (``follow``: every access unit, in order) and writes skip
    pictures that fit into it (``skip``)."""

    def __init__(self) -> None:
        self._sps: dict[int, dict[str, int]] = {}
        self._streams: dict[int, StreamInfo] = {}  # by pps_id, made when the PPS arrives
        self.info: StreamInfo | None = None  # of the last slice followed
        self._ref_frame_num: int | None = None  # frame_num of the last reference picture sent
        self._shift = 0  # skip pictures since the last IDR: added to the encoder's frame_num
        # The quantiser of the last access unit followed (its first slice's), None if unknown.
        self.qp: int | None = None

    def follow(self, au: bytes) -> bytes:
        """The access unit as it must be sent: slices renumbered after skip pictures. Anything
        this module cannot parse turns skip pictures off until the next IDR."""
        try:
            return self._follow(au)
        except (ValueError, IndexError, KeyError):
            self.info, self._ref_frame_num = None, None
            if self._shift:
                raise ValueError("cannot renumber an access unit after skip pictures") from None
            return au

    def _follow(self, au: bytes) -> bytes:
        self.qp = None
        pieces: list[bytes] = []
        done = 0
        for start, end in nalu_spans(au):
            nal_type = h264_nal_type(au[start])
            if nal_type == H264_NAL_SLICE_IDR:
                self._shift = 0
            if nal_type == H264_NAL_SPS:
                sps = parse_sps(au[start:end])
                self._sps[sps["sps_id"]] = sps
            elif nal_type == H264_NAL_PPS:
                pps = parse_pps(au[start:end])
                sps = self._sps[pps["sps_id"]]
                self._streams[pps["pps_id"]] = StreamInfo(
                    pps_id=pps["pps_id"], log2_max_frame_num=sps["log2_max_frame_num"], poc_type=sps["poc_type"],
                    width_mbs=sps["width_mbs"], height_mbs=sps["height_mbs"],
                    frame_mbs_only=bool(sps["frame_mbs_only"]), max_ref_frames=sps["max_ref_frames"],
                    cabac=bool(pps["cabac"]), redundant_pic_cnt=bool(pps["redundant_pic_cnt"]),
                    deblocking_control=bool(pps["deblocking_control"]), pic_init_qp=pps["pic_init_qp"],
                    log2_max_poc_lsb=sps["log2_max_poc_lsb"], bottom_field_poc=bool(pps["bottom_field_poc"]))
            elif is_h264_slice(nal_type):
                nal = self._slice(au[start:end], nal_type)
                if nal is not None:
                    pieces += [au[done:start], nal]
                    done = end
        if not pieces:
            return au
        pieces.append(au[done:])
        return b"".join(pieces)

    def _slice(self, nal: bytes, nal_type: int) -> bytes | None:
        """Note the slice's frame_num; the slice renumbered, or None if it stays as it is."""
        # A prefix that ends on a non-zero byte: no emulation-prevention sequence crosses its
        # end, so it unescapes on its own, and re-escaping it cannot change what follows.
        cut = min(len(nal), 16)
        while cut < len(nal) and nal[cut - 1] == 0:
            cut += 1
        rbsp = unescape_rbsp(nal[1:cut])
        r = BitReader(rbsp)
        first_mb = r.ue()
        slice_type = r.ue()
        info = self.info = self._streams[r.ue()]
        bits = info.log2_max_frame_num
        at = r.pos
        frame_num = (r.u(bits) + self._shift) % (1 << bits)
        if first_mb == 0:
            self.qp = _slice_qp(r, info, slice_type % 5, idr=nal_type == H264_NAL_SLICE_IDR,
                                reference=bool(nal[0] & 0x60))
        if nal[0] & 0x60:  # nal_ref_idc != 0: a reference picture
            self._ref_frame_num = frame_num
        if not self._shift:
            return None
        total = 8 * len(rbsp)
        value = int.from_bytes(rbsp, "big")
        shift = total - at - bits
        value = (value & ~(((1 << bits) - 1) << shift)) | (frame_num << shift)
        return nal[:1] + escape_rbsp(value.to_bytes(len(rbsp), "big")) + nal[cut:]

    def skip(self) -> bytes | None:
        """An access unit that shows the last picture again, or None when this stream cannot
        take one (see the module's docstring)."""
        info = self.info
        if info is None or self._ref_frame_num is None or not info.skippable:
            return None
        frame_num = (self._ref_frame_num + 1) % (1 << info.log2_max_frame_num)
        w = BitWriter()
        w.ue(0)  # first_mb_in_slice
        w.ue(SLICE_TYPE_P_ALL)
        w.ue(info.pps_id)
        w.u(info.log2_max_frame_num, frame_num)
        # frames only, not IDR, POC type 2: no field flag, idr_pic_id or POC fields
        if info.redundant_pic_cnt:
            w.ue(0)
        w.u(1, 0)  # num_ref_idx_active_override_flag
        w.u(1, 0)  # ref_pic_list_modification_flag_l0
        w.u(1, 0)  # dec_ref_pic_marking: adaptive_ref_pic_marking_mode_flag 0 (sliding window)
        # CAVLC: no cabac_init_idc
        w.se(0)  # slice_qp_delta
        if info.deblocking_control:
            w.ue(1)  # disable_deblocking_filter_idc: nothing to filter in a copy
        w.ue(info.width_mbs * info.height_mbs)  # mb_skip_run: every macroblock
        self._ref_frame_num = frame_num
        self._shift += 1
        return START_CODE_4 + bytes((NAL_REF_SLICE,)) + escape_rbsp(w.rbsp())


SLICE_P, SLICE_B, SLICE_I = 0, 1, 2


def _slice_qp(r: BitReader, info: StreamInfo, slice_type: int, *, idr: bool, reference: bool) -> int | None:
    """SliceQP (pic_init_qp + slice_qp_delta) read on from just after frame_num; None for what
    this reader does not follow (fields, B or SP/SI slices, or a header longer than the prefix)."""
    if not info.frame_mbs_only or slice_type not in (SLICE_P, SLICE_I):
        return None
    try:
        if idr:
            r.ue()  # idr_pic_id
        if info.poc_type == 0:
            r.u(info.log2_max_poc_lsb)
            if info.bottom_field_poc:
                r.se()
        elif info.poc_type != 2:
            return None
        if info.redundant_pic_cnt:
            r.ue()
        if slice_type == SLICE_P:
            if r.u(1):  # num_ref_idx_active_override_flag
                r.ue()
            if r.u(1):  # ref_pic_list_modification_flag_l0
                while r.ue() != 3:  # modification_of_pic_nums_idc
                    r.ue()
        if reference:
            if idr:
                r.u(2)  # no_output_of_prior_pics_flag, long_term_reference_flag
            elif r.u(1):  # adaptive_ref_pic_marking_mode_flag
                while (op := r.ue()) != 0:
                    if op in (1, 3):
                        r.ue()
                    if op in (2, 3, 6):
                        r.ue()
                    if op == 4:
                        r.ue()
        if info.cabac and slice_type == SLICE_P:
            r.ue()  # cabac_init_idc
        return info.pic_init_qp + r.se()
    except (ValueError, IndexError):  # ran past the prefix _slice unescaped
        return None
