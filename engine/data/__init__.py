"""Images and labels: dataset kinds (synthetic streets, CamVid, Cityscapes), transforms, seeded step loaders."""
