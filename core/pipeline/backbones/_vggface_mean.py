"""VGG-Face's mean pixel, in a module of its own: vggface16 and its Keras preprocessing layer (_vggface_layers) both
need it, and the backbone builds its fine-tuning network with that layer, so neither may import the other for it."""

# Mean pixel of the VGG-Face training set per channel, in the B, G, R order the network expects.
MEAN_BGR = (93.5940, 104.7624, 129.1863)
