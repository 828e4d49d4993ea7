package io.aimp.pod;

/** Counts requests in flight and, once closed, admits no more, so that a stop can drain them. */
final class Gate {

    private boolean open = true;
    private int inFlight;

    /** Admits one request, or returns false when the gate is closed. */
    synchronized boolean enter() {
        if (!open) {
            return false;
        }
        inFlight++;
        return true;
    }

    /** Marks an admitted request finished. */
    synchronized void exit() {
        inFlight--;
        if (inFlight == 0) {
            notifyAll();
        }
    }

    synchronized boolean isOpen() {
        return open;
    }

    /**
     * Closes the gate and waits up to {@code timeoutMillis} for admitted requests to finish;
     * returns how many are still running when it gives up (0 when all finished).
     */
    synchronized int closeAndDrain(long timeoutMillis) throws InterruptedException {
        open = false;
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
        while (inFlight > 0) {
            long left = (deadline - System.nanoTime()) / 1_000_000L;
            if (left <= 0) {
                break;
            }
            wait(left);
        }
        return inFlight;
    }
}
