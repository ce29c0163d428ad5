"""OpenH264 (Debian's ``libopenh264-7``) through ctypes, configured as WebRTC configures it for a
screen share: the encoder the LiveKit SDK's own ``VideoSource`` path uses (libwebrtc's
``H264EncoderImpl::CreateEncoderParams`` with ``VideoCodecMode::kScreensharing``):
``SCREEN_CONTENT_REAL_TIME``, ``RC_BITRATE_MODE`` at the target, no maximum bitrate, frame
skipping on, one slice, SPS listing, no periodic IDR, CAVLC, one temporal layer.

PyAV's FFmpeg has no ``libopenh264`` encoder, hence ctypes. The struct layouts follow
``wels/codec_app_def.h`` of OpenH264 2.3 (sizes checked at import: SEncParamExt 920 bytes,
SFrameBSInfo 5144 on x86-64).
"""

from __future__ import annotations

import ctypes

import numpy as np

LIBRARY = "libopenh264.so.7"
MAX_SPATIAL_LAYER_NUM = 4
MAX_SLICES_NUM_TMP = 35
MAX_LAYER_NUM_OF_FRAME = 128
SCREEN_CONTENT_REAL_TIME = 1
RC_BITRATE_MODE = 1
SM_FIXEDSLCNUM_SLICE = 1
SPS_LISTING = 2
VIDEO_FORMAT_I420 = 23
FRAME_TYPE_IDR, FRAME_TYPE_SKIP = 1, 4
ENCODER_OPTION_BITRATE = 5
ENCODER_OPTION_TRACE_LEVEL = 25
WELS_LOG_QUIET = 0
SPATIAL_LAYER_ALL = 4


class SliceArgument(ctypes.Structure):
    _fields_ = [("uiSliceMode", ctypes.c_int), ("uiSliceNum", ctypes.c_uint),
                ("uiSliceMbNum", ctypes.c_uint * MAX_SLICES_NUM_TMP), ("uiSliceSizeConstraint", ctypes.c_uint)]


class SpatialLayerConfig(ctypes.Structure):
    _fields_ = [("iVideoWidth", ctypes.c_int), ("iVideoHeight", ctypes.c_int), ("fFrameRate", ctypes.c_float),
                ("iSpatialBitrate", ctypes.c_int), ("iMaxSpatialBitrate", ctypes.c_int),
                ("uiProfileIdc", ctypes.c_int), ("uiLevelIdc", ctypes.c_int), ("iDLayerQp", ctypes.c_int),
                ("sSliceArgument", SliceArgument),
                ("bVideoSignalTypePresent", ctypes.c_bool), ("uiVideoFormat", ctypes.c_ubyte),
                ("bFullRange", ctypes.c_bool), ("bColorDescriptionPresent", ctypes.c_bool),
                ("uiColorPrimaries", ctypes.c_ubyte), ("uiTransferCharacteristics", ctypes.c_ubyte),
                ("uiColorMatrix", ctypes.c_ubyte), ("bAspectRatioPresent", ctypes.c_bool),
                ("eAspectRatio", ctypes.c_int), ("sAspectRatioExtWidth", ctypes.c_ushort),
                ("sAspectRatioExtHeight", ctypes.c_ushort)]


class EncParamExt(ctypes.Structure):
    _fields_ = [("iUsageType", ctypes.c_int), ("iPicWidth", ctypes.c_int), ("iPicHeight", ctypes.c_int),
                ("iTargetBitrate", ctypes.c_int), ("iRCMode", ctypes.c_int), ("fMaxFrameRate", ctypes.c_float),
                ("iTemporalLayerNum", ctypes.c_int), ("iSpatialLayerNum", ctypes.c_int),
                ("sSpatialLayers", SpatialLayerConfig * MAX_SPATIAL_LAYER_NUM),
                ("iComplexityMode", ctypes.c_int), ("uiIntraPeriod", ctypes.c_uint), ("iNumRefFrame", ctypes.c_int),
                ("eSpsPpsIdStrategy", ctypes.c_int), ("bPrefixNalAddingCtrl", ctypes.c_bool),
                ("bEnableSSEI", ctypes.c_bool), ("bSimulcastAVC", ctypes.c_bool), ("iPaddingFlag", ctypes.c_int),
                ("iEntropyCodingModeFlag", ctypes.c_int), ("bEnableFrameSkip", ctypes.c_bool),
                ("iMaxBitrate", ctypes.c_int), ("iMaxQp", ctypes.c_int), ("iMinQp", ctypes.c_int),
                ("uiMaxNalSize", ctypes.c_uint), ("bEnableLongTermReference", ctypes.c_bool),
                ("iLTRRefNum", ctypes.c_int), ("iLtrMarkPeriod", ctypes.c_uint),
                ("iMultipleThreadIdc", ctypes.c_ushort), ("bUseLoadBalancing", ctypes.c_bool),
                ("iLoopFilterDisableIdc", ctypes.c_int), ("iLoopFilterAlphaC0Offset", ctypes.c_int),
                ("iLoopFilterBetaOffset", ctypes.c_int), ("bEnableDenoise", ctypes.c_bool),
                ("bEnableBackgroundDetection", ctypes.c_bool), ("bEnableAdaptiveQuant", ctypes.c_bool),
                ("bEnableFrameCroppingFlag", ctypes.c_bool), ("bEnableSceneChangeDetect", ctypes.c_bool),
                ("bIsLosslessLink", ctypes.c_bool), ("bFixRCOverShoot", ctypes.c_bool),
                ("iIdrBitrateRatio", ctypes.c_int)]


class LayerBSInfo(ctypes.Structure):
    _fields_ = [("uiTemporalId", ctypes.c_ubyte), ("uiSpatialId", ctypes.c_ubyte), ("uiQualityId", ctypes.c_ubyte),
                ("eFrameType", ctypes.c_int), ("uiLayerType", ctypes.c_ubyte), ("iSubSeqId", ctypes.c_int),
                ("iNalCount", ctypes.c_int), ("pNalLengthInByte", ctypes.POINTER(ctypes.c_int)),
                ("pBsBuf", ctypes.POINTER(ctypes.c_ubyte))]


class FrameBSInfo(ctypes.Structure):
    _fields_ = [("iLayerNum", ctypes.c_int), ("sLayerInfo", LayerBSInfo * MAX_LAYER_NUM_OF_FRAME),
                ("eFrameType", ctypes.c_int), ("iFrameSizeInBytes", ctypes.c_int), ("uiTimeStamp", ctypes.c_longlong)]


class SourcePicture(ctypes.Structure):
    _fields_ = [("iColorFormat", ctypes.c_int), ("iStride", ctypes.c_int * 4),
                ("pData", ctypes.c_void_p * 4), ("iPicWidth", ctypes.c_int), ("iPicHeight", ctypes.c_int),
                ("uiTimeStamp", ctypes.c_longlong)]


class BitrateInfo(ctypes.Structure):
    _fields_ = [("iLayer", ctypes.c_int), ("iBitrate", ctypes.c_int)]


if ctypes.sizeof(EncParamExt) != 920 or ctypes.sizeof(FrameBSInfo) != 5144:
    raise ImportError("OpenH264 struct layout mismatch (expected OpenH264 2.3 on x86-64)")

_enc_p = ctypes.c_void_p
_VTABLE = [  # ISVCEncoderVtbl, in order
    ("Initialize", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p, ctypes.c_void_p)),
    ("InitializeExt", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p, ctypes.POINTER(EncParamExt))),
    ("GetDefaultParams", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p, ctypes.POINTER(EncParamExt))),
    ("Uninitialize", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p)),
    ("EncodeFrame", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p, ctypes.POINTER(SourcePicture),
                                     ctypes.POINTER(FrameBSInfo))),
    ("EncodeParameterSets", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p, ctypes.POINTER(FrameBSInfo))),
    ("ForceIntraFrame", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p, ctypes.c_bool)),
    ("SetOption", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p, ctypes.c_int, ctypes.c_void_p)),
    ("GetOption", ctypes.CFUNCTYPE(ctypes.c_int, _enc_p, ctypes.c_int, ctypes.c_void_p)),
]


def version() -> str:
    """The library's version, e.g. "2.3.1"."""

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("revision", ctypes.c_uint),
                    ("reserved", ctypes.c_uint)]

    v = Version()
    _library().WelsGetCodecVersionEx(ctypes.byref(v))
    return f"{v.major}.{v.minor}.{v.revision}"


def _library() -> ctypes.CDLL:
    return ctypes.CDLL(LIBRARY)


class OpenH264Encoder:
    """One OpenH264 encoder for I420 pictures of one size; ``encode`` returns Annex B bytes (empty
    when the rate control skipped the frame)."""

    def __init__(self, width: int, height: int, *, fps: float, bitrate: int) -> None:
        self._lib = _library()
        handle = ctypes.c_void_p()
        if self._lib.WelsCreateSVCEncoder(ctypes.byref(handle)) != 0 or not handle.value:
            raise RuntimeError("WelsCreateSVCEncoder failed")
        self._handle = handle
        vtbl_ptr = ctypes.cast(handle, ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p * len(_VTABLE))))
        table = vtbl_ptr.contents.contents
        self._fn = {name: proto(table[i]) for i, (name, proto) in enumerate(_VTABLE)}
        quiet = ctypes.c_int(WELS_LOG_QUIET)  # its warnings about screen content go to stderr otherwise
        self._call("SetOption", ENCODER_OPTION_TRACE_LEVEL, ctypes.byref(quiet))
        p = EncParamExt()
        self._call("GetDefaultParams", ctypes.byref(p))
        p.iUsageType = SCREEN_CONTENT_REAL_TIME
        p.iPicWidth, p.iPicHeight = width, height
        p.iTargetBitrate = bitrate
        p.iMaxBitrate = 0  # UNSPECIFIED_BIT_RATE, as WebRTC leaves it
        p.iRCMode = RC_BITRATE_MODE
        p.fMaxFrameRate = fps
        p.bEnableFrameSkip = True
        p.uiIntraPeriod = 0
        p.eSpsPpsIdStrategy = SPS_LISTING
        p.uiMaxNalSize = 0
        p.iMultipleThreadIdc = 1  # WebRTC's NumberOfThreads() returns 1 unless a field trial says otherwise
        layer = p.sSpatialLayers[0]
        layer.iVideoWidth, layer.iVideoHeight, layer.fFrameRate = width, height, fps
        layer.iSpatialBitrate, layer.iMaxSpatialBitrate = bitrate, 0
        p.iTemporalLayerNum = 1
        layer.sSliceArgument.uiSliceNum = 1
        layer.sSliceArgument.uiSliceMode = SM_FIXEDSLCNUM_SLICE
        if self._call("InitializeExt", ctypes.byref(p)) != 0:
            raise RuntimeError("OpenH264 InitializeExt failed")
        self.width, self.height = width, height
        self._pts_ms = 0
        self._step_ms = 1000.0 / fps
        self._frames = 0

    def _call(self, name: str, *args: object) -> int:
        result: int = self._fn[name](self._handle, *args)
        return result

    def set_bitrate(self, bitrate: int) -> None:
        info = BitrateInfo(SPATIAL_LAYER_ALL, bitrate)
        self._call("SetOption", ENCODER_OPTION_BITRATE, ctypes.byref(info))

    def encode(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, *, keyframe: bool = False) -> tuple[bytes, bool]:
        """(Annex B access unit, is IDR) for one I420 picture given as three C-contiguous planes."""
        if keyframe:
            self._call("ForceIntraFrame", True)
        pic = SourcePicture()
        pic.iColorFormat = VIDEO_FORMAT_I420
        pic.iPicWidth, pic.iPicHeight = self.width, self.height
        for i, plane in enumerate((y, u, v)):
            pic.iStride[i] = plane.strides[0]
            pic.pData[i] = plane.ctypes.data
        pic.uiTimeStamp = round(self._frames * self._step_ms)
        self._frames += 1
        info = FrameBSInfo()
        if self._call("EncodeFrame", ctypes.byref(pic), ctypes.byref(info)) != 0:
            raise RuntimeError("OpenH264 EncodeFrame failed")
        if info.eFrameType == FRAME_TYPE_SKIP:
            return b"", False
        out = bytearray()
        for li in range(info.iLayerNum):
            layer = info.sLayerInfo[li]
            size = sum(layer.pNalLengthInByte[n] for n in range(layer.iNalCount))
            out += ctypes.string_at(layer.pBsBuf, size)
        return bytes(out), info.eFrameType == FRAME_TYPE_IDR

    def close(self) -> None:
        if self._handle:
            self._call("Uninitialize")
            self._lib.WelsDestroySVCEncoder(self._handle)
            self._handle = None  # type: ignore[assignment]
