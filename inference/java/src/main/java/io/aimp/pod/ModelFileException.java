package io.aimp.pod;

/** The model file cannot be used; the message names the file and what is wrong with it. */
public final class ModelFileException extends Exception {

    private static final long serialVersionUID = 1L;

    public ModelFileException(String message) {
        super(message);
    }

    public ModelFileException(String message, Throwable cause) {
        super(message, cause);
    }
}
