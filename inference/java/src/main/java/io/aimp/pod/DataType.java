package io.aimp.pod;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * The numeric tensor datatypes this pod accepts as input, with how each reads from JSON and from
 * the binary tensor extension's little-endian bytes. Every value becomes a double; FP32 and FP16
 * values are first rounded to their own precision, as a tensor of that type would hold them.
 */
public enum DataType {
    FP64(8, true),
    FP32(4, true),
    FP16(2, true),
    INT64(8, false),
    INT32(4, false),
    INT16(2, false),
    INT8(1, false),
    UINT64(8, false),
    UINT32(4, false),
    UINT16(2, false),
    UINT8(1, false);

    private final int bytes;
    private final boolean floating;

    DataType(int bytes, boolean floating) {
        this.bytes = bytes;
        this.floating = floating;
    }

    /** Bytes per element in the binary tensor extension. */
    public int bytes() {
        return bytes;
    }

    /** The names of all accepted datatypes, for error messages. */
    public static String names() {
        return Arrays.stream(values()).map(Enum::name).collect(Collectors.joining(", "));
    }

    /** The datatype called {@code name}, or null when the pod does not accept it. */
    public static DataType byName(String name) {
        for (DataType type : values()) {
            if (type.name().equals(name)) {
                return type;
            }
        }
        return null;
    }

    /**
     * The value of one JSON element, or throws IllegalArgumentException saying why the element
     * does not fit this datatype.
     */
    public double fromJson(JsonNode element) {
        if (!element.isNumber()) {
            throw new IllegalArgumentException("is " + describe(element) + ", not a number");
        }
        if (floating) {
            double value = element.doubleValue();
            return switch (this) {
                case FP32 -> (float) value;
                case FP16 -> halfToFloat(floatToHalf((float) value));
                default -> value;
            };
        }
        if (!element.isIntegralNumber()) {
            throw new IllegalArgumentException("is " + element + ", not an integer as " + this + " needs");
        }
        if (!element.canConvertToLong() && this != UINT64) {
            throw new IllegalArgumentException("is " + element + ", out of range for " + this);
        }
        double value = element.doubleValue();
        if (!inRange(element)) {
            throw new IllegalArgumentException("is " + element + ", out of range for " + this);
        }
        return value;
    }

    private boolean inRange(JsonNode element) {
        if (this == UINT64) {
            return element.bigIntegerValue().signum() >= 0 && element.bigIntegerValue().bitLength() <= 64;
        }
        long v = element.longValue();
        return switch (this) {
            case INT32 -> v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE;
            case INT16 -> v >= Short.MIN_VALUE && v <= Short.MAX_VALUE;
            case INT8 -> v >= Byte.MIN_VALUE && v <= Byte.MAX_VALUE;
            case UINT32 -> v >= 0 && v <= 0xFFFF_FFFFL;
            case UINT16 -> v >= 0 && v <= 0xFFFF;
            case UINT8 -> v >= 0 && v <= 0xFF;
            default -> true;
        };
    }

    /** Reads element {@code index} of a little-endian buffer of this datatype. */
    public double fromBytes(ByteBuffer le, int index) {
        int at = index * bytes;
        return switch (this) {
            case FP64 -> le.getDouble(at);
            case FP32 -> le.getFloat(at);
            case FP16 -> halfToFloat(le.getShort(at));
            case INT64 -> le.getLong(at);
            case INT32 -> le.getInt(at);
            case INT16 -> le.getShort(at);
            case INT8 -> le.get(at);
            case UINT64 -> unsignedLongToDouble(le.getLong(at));
            case UINT32 -> Integer.toUnsignedLong(le.getInt(at));
            case UINT16 -> Short.toUnsignedInt(le.getShort(at));
            case UINT8 -> Byte.toUnsignedInt(le.get(at));
        };
    }

    private static double unsignedLongToDouble(long v) {
        return v >= 0 ? v : ((v >>> 1) | (v & 1)) * 2.0;
    }

    private static String describe(JsonNode element) {
        String text = element.toString();
        return text.length() > 40 ? text.substring(0, 40) + "..." : text;
    }

    /** IEEE 754 half (binary16) bits to float, exactly. */
    static float halfToFloat(short half) {
        int h = half & 0xFFFF;
        int sign = (h & 0x8000) << 16;
        int exponent = (h >>> 10) & 0x1F;
        int mantissa = h & 0x3FF;
        if (exponent == 0x1F) {
            return Float.intBitsToFloat(sign | 0x7F80_0000 | (mantissa << 13));
        }
        if (exponent == 0) {
            float magnitude = mantissa * 0x1p-24f;
            return sign == 0 ? magnitude : -magnitude;
        }
        return Float.intBitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }

    /** Float to the nearest IEEE 754 half (round half to even), as numpy's float16 cast does. */
    static short floatToHalf(float value) {
        int bits = Float.floatToIntBits(value);
        int sign = (bits >>> 16) & 0x8000;
        float abs = Math.abs(value);
        if (Float.isNaN(value)) {
            return (short) (sign | 0x7E00);
        }
        if (abs >= 65520.0f) {
            return (short) (sign | 0x7C00);
        }
        if (abs < 0x1p-14f) {
            // Subnormal half: a multiple of 2^-24; Math.rint rounds half to even.
            return (short) (sign | (int) Math.rint(abs * 0x1p24f));
        }
        int exp = Math.getExponent(abs);
        float scaled = Math.scalb(abs, 10 - exp);
        int mantissa = (int) Math.rint(scaled);
        if (mantissa == 2048) {
            mantissa = 1024;
            exp++;
        }
        return (short) (sign | ((exp + 15) << 10) | (mantissa & 0x3FF));
    }
}
