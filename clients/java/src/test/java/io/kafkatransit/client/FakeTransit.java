package io.kafkatransit.client;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * Stands in for Vault's transit engine in unit tests: data keys, AES-GCM with associated
 * data, convergent (deterministic) encryption under a context, HMAC; failures read like
 * Vault's ("cipher: message authentication failed"), and a deleted key's like
 * {@link VaultTransit}'s reading of Vault's answer ("encryption key not found" per item).
 */
final class FakeTransit implements TransitDecrypter, TransitEncrypter {
    private static final SecureRandom RANDOM = new SecureRandom();
    private final Map<String, byte[]> keys = new HashMap<>();
    private final Set<String> deletedKeys = new HashSet<>();
    int dataKeys;
    /** Decrypt requests per key name, one per call (a batch is one request). */
    final List<String> decryptRequests = new ArrayList<>();

    /** What {@code kafka-transit forget} does: deletes the transit key, every version. */
    synchronized void delete(String name) {
        keys.remove(name);
        deletedKeys.add(name);
    }

    synchronized boolean deleted(String name) {
        return deletedKeys.contains(name);
    }

    private synchronized byte[] key(String name, byte[] context) {
        if (deletedKeys.contains(name)) {
            throw new IllegalStateException("transit key " + name + " was deleted");
        }
        byte[] root = keys.computeIfAbsent(name, n -> {
            byte[] k = new byte[32];
            RANDOM.nextBytes(k);
            return k;
        });
        return context == null ? root : hmac(root, context);
    }

    private static byte[] hmac(byte[] key, byte[] data) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            return mac.doFinal(data);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    private static Cipher gcm(int mode, byte[] key, byte[] nonce, byte[] ad) throws GeneralSecurityException {
        Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
        cipher.init(mode, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, nonce));
        if (ad != null) {
            cipher.updateAAD(ad);
        }
        return cipher;
    }

    @Override
    public synchronized DataKey dataKey(String keyName) {
        dataKeys++;
        byte[] material = new byte[32];
        RANDOM.nextBytes(material);
        return new DataKey(material, encrypt(keyName, material, null, null));
    }

    @Override
    public String encrypt(String keyName, byte[] plaintext, byte[] context, byte[] associatedData) {
        byte[] key = key(keyName, context);
        byte[] nonce = new byte[12];
        if (context != null) {
            System.arraycopy(hmac(key, plaintext), 0, nonce, 0, 12);
        } else {
            RANDOM.nextBytes(nonce);
        }
        try {
            byte[] sealed = gcm(Cipher.ENCRYPT_MODE, key, nonce, associatedData).doFinal(plaintext);
            return "vault:v1:" + Base64.getEncoder().encodeToString(
                    ByteBuffer.allocate(12 + sealed.length).put(nonce).put(sealed).array());
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public String hmac(String keyName, byte[] input) {
        return "vault:v1:" + Base64.getEncoder().encodeToString(hmac(key(keyName, null), input));
    }

    @Override
    public List<Decryption> decrypt(String keyName, List<String> ciphertexts) {
        return decryptItems(keyName, ciphertexts.stream().map(c -> new Item(c, null, null)).toList());
    }

    @Override
    public List<Decryption> decryptItems(String keyName, List<Item> items) {
        List<Decryption> out = new ArrayList<>();
        synchronized (this) {
            decryptRequests.add(keyName);
            if (deletedKeys.contains(keyName)) {
                return Collections.nCopies(items.size(), new Decryption.Failed(Decryption.KEY_NOT_FOUND));
            }
        }
        for (Item item : items) {
            if (!item.ciphertext().startsWith("vault:v1:")) {
                out.add(new Decryption.Failed("invalid ciphertext"));
                continue;
            }
            byte[] raw = Base64.getDecoder().decode(item.ciphertext().substring(9).getBytes(StandardCharsets.US_ASCII));
            try {
                out.add(new Decryption.Plaintext(gcm(Cipher.DECRYPT_MODE, key(keyName, item.context()),
                        Arrays.copyOf(raw, 12), item.associatedData()).doFinal(raw, 12, raw.length - 12)));
            } catch (AEADBadTagException e) {
                out.add(new Decryption.Failed("cipher: message authentication failed"));
            } catch (GeneralSecurityException e) {
                out.add(new Decryption.Failed(e.toString()));
            }
        }
        return out;
    }
}
