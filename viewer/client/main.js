// Neuroglancer's default viewer: the whole state lives in the URL fragment (#!{json}).
// It sets window.viewer, which the review page (same origin) reads and drives.
import "neuroglancer/unstable/main.bundle.js";
