"""The web part: REST API (`api/`), server-rendered dashboard (`pages/`), sign-in and roles (`auth/`),
background sync jobs and the daily scheduler. May use every other part; nothing imports it back."""
